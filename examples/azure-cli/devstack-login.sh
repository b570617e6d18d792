#!/usr/bin/env bash
# Sign the Azure CLI in to devstack as a service principal, so that consumer.sh runs there.
#
#   source .devstack/env
#   export AZURE_CONFIG_DIR=$(mktemp -d)    # keeps your own `az` sign-ins out of it
#   AZURE_CLIENT_ID=<app id> AZURE_TENANT_ID=fabrikam.example AZURE_CLIENT_SECRET=<secret> \
#     examples/azure-cli/devstack-login.sh
#
# Registers a cloud named `devstack` whose Entra ID is devstack's (BROKER_AUTHORITY_HOST), turns
# off MSAL's instance discovery (it asks Microsoft about the authority), and signs in with
# `--skip-subscription-discovery`: devstack emulates no Azure Resource Manager, and Key Vault's
# data plane needs no subscription. The CLI trusts devstack's CA through REQUESTS_CA_BUNDLE,
# which the env file sets. In Azure none of this is needed: `az login --identity`.
set -euo pipefail

: "${BROKER_AUTHORITY_HOST:?source .devstack/env first}"
: "${AZURE_CLIENT_ID:?set AZURE_CLIENT_ID to the app id of the service principal}"
: "${AZURE_TENANT_ID:?set AZURE_TENANT_ID to its tenant (devstack: fabrikam.example)}"
: "${AZURE_CLIENT_SECRET:?set AZURE_CLIENT_SECRET to its client secret}"

endpoints=(
  --endpoint-active-directory "$BROKER_AUTHORITY_HOST"
  --endpoint-active-directory-resource-id https://management.azure.com/
  --suffix-keyvault-dns .vault.localhost
)
if az cloud show --name devstack --output none 2>/dev/null; then
  az cloud update --name devstack "${endpoints[@]}" --only-show-errors --output none
else
  # Resource Manager's endpoint is required to register a cloud; it is never called here
  az cloud register --name devstack --skip-endpoint-discovery "${endpoints[@]}" \
    --endpoint-resource-manager https://management.devstack.invalid/ --output none
fi
az cloud set --name devstack --only-show-errors --output none
az config set core.instance_discovery=false --only-show-errors --output none
# the secret goes in on standard input (`@-`), not on a command line `ps` can show
printf '%s' "$AZURE_CLIENT_SECRET" | az login --service-principal --username "$AZURE_CLIENT_ID" \
  --password @- --tenant "$AZURE_TENANT_ID" --skip-subscription-discovery \
  --allow-no-subscriptions --only-show-errors --output none
echo "az is signed in to devstack as $AZURE_CLIENT_ID ($AZURE_TENANT_ID)" >&2
