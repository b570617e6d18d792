#!/bin/sh
# azd postprovision hook: the vaults listed in RECOVER_KEY_VAULTS are recovered now, so the list
# is emptied (a later deployment with createMode 'recover' on a live vault would fail).
set -eu

if [ -n "${RECOVER_KEY_VAULTS:-}" ]; then
  azd env set RECOVER_KEY_VAULTS ""
  printf 'postprovision: recovered %s with every secret in it; RECOVER_KEY_VAULTS is cleared\n' \
    "$RECOVER_KEY_VAULTS" >&2
fi
