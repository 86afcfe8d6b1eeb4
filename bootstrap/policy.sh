# shellcheck shell=bash
# shellcheck disable=SC2154  # repo is set by ./bg before it sources this
# The project's policy pack on every `pulumi up`, `update` and `preview` that ./bg starts, so its
# mandatory rules hold there as they do in the workflow and the delivery commands.

with_policy_pack() { # PULUMI ARGS...: sets pulumi_args to them, plus `--policy-pack policies`
  # for up, update and preview (with the stack's own policy config, stacks/policy.<stack>.json,
  # when it has one), unless the command names that pack already (a second pack of one's own
  # adds to it, never replaces it). Run from $repo: relative paths resolve there.
  pulumi_args=("$@")
  case "${1:-}" in up|update|preview) ;; *) return 0 ;; esac
  local previous="" arg value ours stack config
  ours=$(cd "$repo/policies" && pwd -P)
  for arg in "$@"; do
    value=""
    case "$previous" in --policy-pack) value=$arg ;; esac
    case "$arg" in --policy-pack=*) value=${arg#--policy-pack=} ;; esac
    if [ -n "$value" ] && [ "$(cd "$repo" && cd "$value" 2>/dev/null && pwd -P)" = "$ours" ]; then
      return 0
    fi
    previous=$arg
  done
  pulumi_args+=(--policy-pack "$repo/policies")
  stack=$(stack_argument "$@")   # ./bg's: the stack the command names, else the selected one
  config="$repo/stacks/policy.${stack##*/}.json"
  if [ -f "$config" ]; then pulumi_args+=(--policy-pack-config "$config"); fi
}
