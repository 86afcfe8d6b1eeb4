# shellcheck shell=bash
# Sourced by delivery.yml before ./bg: where the Pulumi state lives on the runner, and its
# passphrase, when the repository configures them (./bg keeps values that are already set).
# STATE_SCOPE=pull-request (the job that runs a pull request's code): a throwaway backend of the
# job's own and no passphrase, whatever else is set; the deploying state is never in reach.
if [ "${STATE_SCOPE:-}" = pull-request ]; then
  unset STATE_PASSPHRASE PULUMI_CONFIG_PASSPHRASE PULUMI_CONFIG_PASSPHRASE_FILE
  export PULUMI_BACKEND_URL="file://${RUNNER_TEMP:-/tmp}/bluegreen-pull-request-state"
  mkdir -p "${PULUMI_BACKEND_URL#file://}"
  return 0 2>/dev/null || exit 0
fi
if [ -n "${STATE_BACKEND:-}" ]; then
  export PULUMI_BACKEND_URL=$STATE_BACKEND
else
  export PULUMI_BACKEND_URL="file://$HOME/.cache/bluegreen/state"
  mkdir -p "$HOME/.cache/bluegreen/state"
fi
if [ -n "${STATE_PASSPHRASE:-}" ]; then export PULUMI_CONFIG_PASSPHRASE=$STATE_PASSPHRASE; fi
