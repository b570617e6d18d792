#!/usr/bin/env bash
# A Partner Center consumer with the Azure CLI alone: the refresh token from Key Vault by its
# secret identifier URL, an access token from it (`az rest` to Entra ID's token endpoint), then
# one Partner Center call.
#
#   az login --identity                     # in Azure; `az login` on a workstation
#   BROKER_CPV_CLIENT_ID=... BROKER_CPV_CLIENT_SECRET=... \
#     examples/azure-cli/consumer.sh https://<vault>.vault.azure.net/secrets/rt-contoso
#
# The signed-in identity needs "Key Vault Secrets User" on the secret rt-<id> (and cs-<id> for
# a partner's own app). The CPV model's app comes from the consumer's own configuration
# (BROKER_CPV_CLIENT_ID / BROKER_CPV_CLIENT_SECRET). BROKER_AUTHORITY_HOST and
# BROKER_PARTNER_CENTER_URL default to Microsoft's; devstack's env file points them at the local
# stand-ins (examples/azure-cli/devstack-login.sh signs the CLI in there).
#
# Tokens and secrets never appear on a command line (where `ps` shows them): they go to `az`
# in files of a private temporary folder. Prints Partner Center's answer as JSON.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 <secret-identifier-url>" >&2
  exit 2
fi
url=${1%/}
authority=${BROKER_AUTHORITY_HOST:-https://login.microsoftonline.com}
partner_center=${BROKER_PARTNER_CENTER_URL:-https://api.partnercenter.microsoft.com}
scope=https://api.partnercenter.microsoft.com/.default

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

urlencode() {  # RFC 3986 percent-encoding, in the shell (no token on a command line)
  local text=$1 out="" char i
  for ((i = 0; i < ${#text}; i++)); do
    char=${text:i:1}
    case $char in
      [a-zA-Z0-9.~_-]) out+=$char ;;
      *) printf -v char '%%%02X' "'$char"; out+=$char ;;
    esac
  done
  printf '%s' "$out"
}

# one read gives the token and the tags that say how to redeem it (one line each)
fields=$(az keyvault secret show --id "$url" \
  --query '[value, tags.tenant_id, tags.client_id, tags.status]' --output tsv)
{ read -r refresh_token; read -r tenant; read -r client_id; read -r status; } <<<"$fields"
unset fields
if [[ $status == pending-consent || $refresh_token == pending-consent ]]; then
  echo "$url: no consented token yet; ask the operator for a consent" >&2
  exit 1
fi

if [[ -z $client_id || $client_id == cpv ]]; then
  client_id=${BROKER_CPV_CLIENT_ID:?set BROKER_CPV_CLIENT_ID (the CPV app) for CPV-model credentials}
  client_secret=${BROKER_CPV_CLIENT_SECRET:?set BROKER_CPV_CLIENT_SECRET}
else  # the partner's own app: its client secret is cs-<id> beside the token
  name=${url#*/secrets/}
  name=${name%%/*}
  client_secret=$(az keyvault secret show --id "${url%%/secrets/*}/secrets/cs-${name#rt-}" \
    --query value --output tsv)
fi

printf 'grant_type=refresh_token&client_id=%s&scope=%s&client_secret=%s&refresh_token=%s' \
  "$(urlencode "$client_id")" "$(urlencode "$scope")" "$(urlencode "$client_secret")" \
  "$(urlencode "$refresh_token")" >"$work/token-request"
az rest --method post --url "${authority%/}/$tenant/oauth2/v2.0/token" \
  --skip-authorization-header --headers 'Content-Type=application/x-www-form-urlencoded' \
  --body "@$work/token-request" --query access_token --output tsv >"$work/access-token"

printf '{"Authorization": "Bearer %s", "Accept": "application/json"}' \
  "$(<"$work/access-token")" >"$work/headers"
az rest --method get --url "${partner_center%/}/v1/profiles/organization" \
  --skip-authorization-header --headers "@$work/headers" \
  --query '{companyName: companyName, tenantId: tenantId}' --output json
