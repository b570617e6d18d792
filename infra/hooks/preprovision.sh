#!/bin/sh
# azd preprovision hook: stop before anything is deployed when the deployment would fail
# halfway, and print the exact command that fixes it. azd runs it with the environment's values
# (AZURE_ENV_NAME, AZURE_SUBSCRIPTION_ID, AZURE_LOCATION, USE_PRIVATE_ENDPOINT, ...) exported.
#
# 1. USE_PRIVATE_ENDPOINT=true delegates a subnet to Microsoft.App/environments (Flex
#    Consumption VNet integration): the Microsoft.App resource provider must be registered.
# 2. After `azd down`, this environment's vaults are soft-deleted with purge protection: their
#    names stay taken for 90 days and a new deployment of them fails. They hold every token, so
#    the fix is to recover them: RECOVER_KEY_VAULTS names them and the template recovers them.
# 3. DEPLOY_EVENT_SUBSCRIPTION=true (left over from an earlier deployment) creates the Event Grid
#    subscriptions, which Event Grid refuses until the function secret_near_expiry is deployed.
#
# The checks need the Azure CLI signed in to the same subscription (`az login`).
set -eu

say() { printf 'preprovision: %s\n' "$*" >&2; }
stop() {
  say "$1"
  shift
  for line in "$@"; do printf '    %s\n' "$line" >&2; done
  exit 1
}

env_name="${AZURE_ENV_NAME:-}"
subscription="${AZURE_SUBSCRIPTION_ID:-}"
location="${AZURE_LOCATION:-}"

if ! command -v az >/dev/null 2>&1; then
  say "the Azure CLI (az) is not installed, so soft-deleted vaults, the Microsoft.App provider and"
  say "the event subscriptions are not checked; install it (https://aka.ms/azure-cli) to be warned early"
  exit 0
fi
if ! az account show --output none ${subscription:+--subscription "$subscription"} 2>/dev/null; then
  stop "the Azure CLI is not signed in to the subscription azd deploys to; sign in, then run azd again:" \
    "az login${subscription:+ && az account set --subscription $subscription}"
fi

# 1. the resource provider behind the functions subnet's delegation
if [ "${USE_PRIVATE_ENDPOINT:-false}" = true ]; then
  state="$(az provider show --namespace Microsoft.App --query registrationState --output tsv \
    ${subscription:+--subscription "$subscription"} 2>/dev/null || true)"
  if [ "$state" != Registered ]; then
    stop "USE_PRIVATE_ENDPOINT is true, and the function app's subnet is delegated to Microsoft.App/environments, but the Microsoft.App resource provider is ${state:-not registered} in this subscription. Register it (once per subscription, a few minutes), then run azd again:" \
      "az provider register --namespace Microsoft.App${subscription:+ --subscription $subscription} --wait"
  fi
fi

# 2. this environment's soft-deleted vaults (tagged azd-env-name, in the same region)
query="[?properties.tags.\"azd-env-name\"=='$env_name'"
[ -n "$location" ] && query="$query && properties.location=='$location'"
query="$query].name"
listed="$(az keyvault list-deleted --resource-type vault --query "$query" --output tsv \
  ${subscription:+--subscription "$subscription"})"
deleted="$(printf '%s\n' "$listed" | tr -d '\r' | sed '/^$/d' | sort | tr '\n' ',' | sed 's/,$//')"
wanted="$(printf '%s' "${RECOVER_KEY_VAULTS:-}" | tr -d ' ' | tr ',' '\n' | sed '/^$/d' | sort | tr '\n' ',' | sed 's/,$//')"
if [ "$deleted" != "$wanted" ]; then
  if [ -n "$deleted" ]; then
    stop "this environment's vaults were deleted (azd down) and are soft-deleted: $deleted. Purge protection keeps their names taken, and the tokens in them, for 90 days. Recover them with the deployment (every secret comes back), then run azd again:" \
      "azd env set RECOVER_KEY_VAULTS \"$deleted\"" \
      "azd up" \
      "(or start over under another environment name: azd env new <name>)"
  fi
  stop "RECOVER_KEY_VAULTS is \"${RECOVER_KEY_VAULTS:-}\", but no vault of this environment is soft-deleted, and recovering a vault that is not deleted fails. Clear it, then run azd again:" \
    "azd env set RECOVER_KEY_VAULTS \"\""
fi

# 3. the event subscriptions need the function deployed
if [ "${DEPLOY_EVENT_SUBSCRIPTION:-false}" = true ]; then
  app="${AZURE_FUNCTION_APP_NAME:-}"
  group="${AZURE_RESOURCE_GROUP:-}"
  if [ -z "$app" ] || [ -z "$group" ] || ! az functionapp function show --resource-group "$group" \
      --name "$app" --function-name secret_near_expiry --output none \
      ${subscription:+--subscription "$subscription"} 2>/dev/null; then
    stop "DEPLOY_EVENT_SUBSCRIPTION is true, but the function secret_near_expiry is not deployed${app:+ to $app}, and Event Grid refuses a subscription to a function that does not exist. Provision and deploy without it first:" \
      "azd env set DEPLOY_EVENT_SUBSCRIPTION false" \
      "azd up" \
      "azd env set DEPLOY_EVENT_SUBSCRIPTION true && azd provision"
  fi
fi
