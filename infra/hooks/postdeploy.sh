#!/bin/sh
# azd postdeploy hook: once the function code is deployed, the Event Grid subscriptions (the
# vaults' near-expiry alarm) can be created; say how, until they are.
set -eu

if [ "${DEPLOY_EVENT_SUBSCRIPTION:-false}" != true ]; then
  printf '%s\n' \
    "postdeploy: the function secret_near_expiry is deployed; switch on the vaults' near-expiry alarm:" \
    "    azd env set DEPLOY_EVENT_SUBSCRIPTION true && azd provision" >&2
fi
