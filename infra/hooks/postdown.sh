#!/bin/sh
# azd postdown hook: the function app is gone, so the next `azd up` must not create the Event
# Grid subscriptions before the code is deployed again. The vaults stay soft-deleted (purge
# protection); the next `azd up` of this environment says how to recover them.
set -eu

if [ "${DEPLOY_EVENT_SUBSCRIPTION:-false}" = true ]; then
  azd env set DEPLOY_EVENT_SUBSCRIPTION false
fi
printf '%s\n' \
  "postdown: both vaults are soft-deleted for 90 days with every token in them (purge protection)." \
  "    The next \`azd up\` of this environment recovers them: its preprovision check prints the command." >&2
