# shellcheck shell=bash
# Sourced by delivery.yml before ./bg: where the Pulumi state lives on the runner, and its
# passphrase, when the repository configures them (./bg keeps values that are already set).
if [ -n "${STATE_BACKEND:-}" ]; then
  export PULUMI_BACKEND_URL=$STATE_BACKEND
else
  export PULUMI_BACKEND_URL="file://$HOME/.cache/bluegreen/state"
  mkdir -p "$HOME/.cache/bluegreen/state"
fi
if [ -n "${STATE_PASSPHRASE:-}" ]; then export PULUMI_CONFIG_PASSPHRASE=$STATE_PASSPHRASE; fi
