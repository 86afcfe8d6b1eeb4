#!/usr/bin/env bash
# Builds the Pulumi engine, its Python and YAML language hosts, the Docker provider plugin, Consul and
# consul-template from the Go module proxy into a per-user cache keyed by version.
#
#   toolchain/build.sh [TOOL...]     TOOL: pulumi language-python language-yaml provider-docker consul consul-template
#
# Tools already installed are used as they are, and only what is missing is built:
# - pulumi on PATH at or above PULUMI_VERSION is used, with the pulumi-language-python beside it
#   (the CLI loads its language host from its own folder); without one there, ours is built and
#   put beside a copy of that pulumi.
# - consul and consul-template on PATH are used only at exactly the pinned versions: they go into
#   the platform images the stacks name (bluegreen/consul:$CONSUL_IMAGE_VERSION,
#   bluegreen/proxy:$PROXY_IMAGE_VERSION); and Consul 1.17.0 or later
#   is no longer open source (Business Source License 1.1).
# A tool already in the cache is reused. Everything lands in "$BLUEGREEN_CACHE/bin" (default
# ~/.cache/bluegreen/bin), which ./bg puts first on PATH.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${BLUEGREEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bluegreen}
bin="$cache/bin"
mkdir -p "$bin" "$cache/plugins" "$cache/tools" "$cache/src"
# One build at a time per cache: two checkouts set up at once would delete each other's sources.
exec 9>"$cache/.build.lock"
flock 9

export GOFLAGS=-mod=mod
export CGO_ENABLED=0
export PULUMI_SKIP_UPDATE_CHECK=true
# Two cores and several GB per link: one package at a time keeps memory bounded.
goflags_build=(-trimpath -ldflags "-s -w")

log() { printf '[toolchain %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

module_dir() { # MODULE@VERSION -> extracted module directory in the Go module cache
  local json dir
  json=$(go mod download -json "$1")
  dir=$(printf '%s' "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir","")); sys.exit(1 if d.get("Error") else 0)') || {
    log "the Go module proxy refused $1:"; printf '%s\n' "$json" >&2; return 1; }
  printf '%s' "$dir"
}

copy_module() { # MODULE@VERSION DEST: a writable copy of a module, for builds with local replaces
  local src; src=$(module_dir "$1")
  rm -rf "$2"; mkdir -p "$(dirname "$2")"; cp -r "$src" "$2"; chmod -R u+w "$2"
}

link_plugin() { # DIR: resource plugins stay off PATH (the CLI would warn); ./bg installs them
  ln -sfn "$1/pulumi-resource-docker" "$cache/plugins/pulumi-resource-docker"
}

link_tool() { # NAME DIR: expose a cached tool's binaries in $bin
  local f
  for f in "$2"/*; do ln -sfn "$f" "$bin/$(basename "$f")"; done
}

cached() { [ -f "$1/.complete" ]; }

version_is() { python3 "$here/versions.py" "$@"; }  # at-least|exactly "$(tool version)" PINNED

installed() { # NAME: the first NAME on PATH that is not one of this cache's own
  local dir own IFS=:
  own=$(cd "$bin" && pwd -P)
  for dir in $PATH; do
    [ -n "$dir" ] && [ -d "$dir" ] && [ "$(cd "$dir" && pwd -P)" != "$own" ] || continue
    if [ -x "$dir/$1" ] && [ ! -d "$dir/$1" ]; then
      case $(readlink -f "$dir/$1") in "$cache"/*) continue ;; esac
      printf '%s\n' "$dir/$1"; return 0
    fi
  done
  return 1
}

# The Python runtime scripts the language host runs: the program executor and the
# dynamic-provider plugin. They ship in the sdk module.
PYTHON_SCRIPTS=(pulumi-language-python-exec pulumi-resource-pulumi-python)

use_installed_pulumi() { # PATH: a pulumi at or above the pin
  local real home out
  real=$(readlink -f "$1"); home=$(dirname "$real")
  if [ -x "$home/pulumi-language-python" ]; then
    ln -sfn "$real" "$bin/pulumi"
    # Ours on PATH would shadow the installed language host (and the CLI would warn).
    rm -f "$bin/pulumi-language-python" "${PYTHON_SCRIPTS[@]/#/$bin/}"
    log "pulumi: using $1 ($("$real" version)) with the pulumi-language-python beside it"
    return
  fi
  # The CLI looks for its language host next to its own resolved binary: give a copy of this one
  # a folder of its own, where build_language_python puts ours.
  out="$cache/tools/pulumi-installed-$(sha256sum "$real" | cut -c1-12)"
  if ! cached "$out"; then
    log "pulumi: using $1 ($("$real" version)); it has no pulumi-language-python beside it"
    mkdir -p "$out"
    ln -f "$real" "$out/pulumi" 2>/dev/null || cp -p "$real" "$out/pulumi"
    local sdk; sdk=$(module_dir "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION")
    install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$sdk/python/dist/pulumi-resource-pulumi-python" "$out/"
    touch "$out/.complete"
  fi
  link_tool pulumi "$out"
}

build_pulumi() {
  local found out="$cache/tools/pulumi-$PULUMI_VERSION"
  if found=$(installed pulumi); then
    if version_is at-least "$("$found" version 2>/dev/null)" "$PULUMI_VERSION"; then
      use_installed_pulumi "$found"; return
    fi
    log "pulumi: $found is not at or above $PULUMI_VERSION; using a build of $PULUMI_VERSION"
  fi
  if cached "$out"; then link_tool pulumi "$out"; return; fi
  local src="$cache/src/pulumi-$PULUMI_VERSION"
  log "pulumi $PULUMI_VERSION: fetching pkg and sdk modules"
  copy_module "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" "$src/pkg"
  copy_module "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" "$src/sdk"
  log "pulumi $PULUMI_VERSION: compiling (minutes when cold)"
  mkdir -p "$out"
  (cd "$src/pkg" && go build "${goflags_build[@]}" -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    -o "$out/pulumi" ./cmd/pulumi)
  install -m 0755 "$src/sdk/python/cmd/pulumi-language-python-exec" "$src/sdk/python/dist/pulumi-resource-pulumi-python" "$out/"
  touch "$out/.complete"; link_tool pulumi "$out"
}

build_language_python() {
  # The CLI looks for its language hosts next to its own (resolved) binary and warns otherwise.
  local home; home=$(dirname "$(readlink -f "$bin/pulumi")")
  case $home in
    "$cache"/tools/*) ;;
    *) log "pulumi-language-python: using $home/pulumi-language-python"; return ;;
  esac
  # Our own minimal language host (toolchain/language-python): the upstream one is a Go module
  # that the module proxy does not serve.
  local key; key=$(cat "$here/language-python/"{go.mod,*.go} | sha256sum | cut -c1-12)
  local out="$cache/tools/language-python-$PULUMI_VERSION-$key"
  if ! cached "$out"; then
    log "pulumi-language-python: compiling"
    mkdir -p "$out"
    (cd "$here/language-python" && go build "${goflags_build[@]}" -o "$out/pulumi-language-python" .)
    touch "$out/.complete"
  fi
  cp -f "$out/pulumi-language-python" "$home/pulumi-language-python"
  link_tool language-python "$home"
}

build_language_yaml() {
  # Pulumi YAML's language host: programs in YAML use this project as a component package
  # (examples/yaml). The CLI looks for it beside its own binary, as for the Python one.
  local home; home=$(dirname "$(readlink -f "$bin/pulumi")")
  if [ -x "$home/pulumi-language-yaml" ] && [[ $home != "$cache"/tools/* ]]; then
    log "pulumi-language-yaml: using $home/pulumi-language-yaml"; return
  fi
  local out="$cache/tools/language-yaml-$PULUMI_YAML_VERSION"
  if ! cached "$out"; then
    log "pulumi-language-yaml $PULUMI_YAML_VERSION: compiling (minutes when cold)"
    mkdir -p "$out"
    GOBIN="$out" go install "${goflags_build[@]}" "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml@v$PULUMI_YAML_VERSION"
    touch "$out/.complete"
  fi
  case $home in
    "$cache"/tools/*) cp -f "$out/pulumi-language-yaml" "$home/pulumi-language-yaml"; link_tool language-yaml "$home" ;;
    *) link_tool language-yaml "$out" ;;  # an installed CLI without it: found on PATH
  esac
}

build_provider_docker() {
  local key; key=$(cat "$here/provider-docker/"{go.mod,go.sum,*.go,shim/shim.go.txt} "$here/versions.env" \
    | sha256sum | cut -c1-12)
  local out="$cache/tools/provider-docker-$key"
  if cached "$out"; then link_plugin "$out"; return; fi
  local src="$cache/src/terraform-provider-docker-$DOCKER_UPSTREAM_VERSION"
  log "pulumi-resource-docker: fetching terraform-provider-docker $DOCKER_UPSTREAM_VERSION"
  copy_module "github.com/kreuzwerker/terraform-provider-docker@$DOCKER_UPSTREAM_VERSION" "$src"
  # The provider lives in an internal package; a one-function shim exposes it to the bridge,
  # as pulumi-docker's own build does.
  mkdir -p "$src/shim"
  cp "$here/provider-docker/shim/shim.go.txt" "$src/shim/shim.go"
  local work="$cache/src/provider-docker-$key"
  rm -rf "$work"; cp -r "$here/provider-docker" "$work"
  # The upstream's go.mod still names itself github.com/terraform-providers/terraform-provider-docker,
  # the path main.go imports; replace whatever path it declares with the patched copy.
  local upmod; upmod=$(awk '$1 == "module" {print $2}' "$src/go.mod")
  (cd "$work" && go mod edit -replace "$upmod=$src")
  log "pulumi-resource-docker: compiling (minutes when cold)"
  mkdir -p "$out"
  (cd "$work" && go build "${goflags_build[@]}" -o "$out/pulumi-resource-docker" .)
  touch "$out/.complete"; link_plugin "$out"
}

use_installed() { # NAME VERSION-FLAG PINNED: link NAME from PATH when it is exactly PINNED
  local found
  found=$(installed "$1") || return 1
  if version_is exactly "$("$found" "$2" 2>&1 | head -n 1)" "$3"; then
    ln -sfn "$(readlink -f "$found")" "$bin/$1"
    log "$1: using $found ($3)"
    return 0
  fi
  log "$1: $found is not $3 (the platform image is built from exactly $3); using a build of $3"
  return 1
}

build_consul() {
  use_installed consul version "$CONSUL_VERSION" && return
  local out="$cache/tools/consul-$CONSUL_VERSION"
  if cached "$out"; then link_tool consul "$out"; return; fi
  local src="$cache/src/consul-$CONSUL_VERSION" sub
  log "consul $CONSUL_VERSION: fetching the module and its local submodules"
  copy_module "github.com/hashicorp/consul@v$CONSUL_VERSION" "$src"
  # go.mod replaces ./api, ./sdk, ... with local folders that the module zip leaves out.
  for sub in $(cd "$src" && go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./"): print(r["Old"]["Path"] + " " + r["New"]["Path"])' | tr ' ' ':'); do
    local mod=${sub%%:*} dir=${sub#*:} ver
    ver=$(cd "$src" && go mod edit -json | python3 -c "
import json, sys
print(next(r['Version'] for r in json.load(sys.stdin)['Require'] if r['Path'] == '$mod'))")
    # Some of these submodule versions were never published to the checksum database; the
    # proxy still serves them, and the main module's own checksum was verified above.
    GONOSUMDB=github.com/hashicorp/consul copy_module "$mod@$ver" "$src/${dir#./}"
  done
  log "consul $CONSUL_VERSION: compiling (minutes when cold)"
  mkdir -p "$out"
  (cd "$src" && go build "${goflags_build[@]}" -o "$out/consul" .)
  touch "$out/.complete"; link_tool consul "$out"
}

build_consul_template() {
  use_installed consul-template -version "$CONSUL_TEMPLATE_VERSION" && return
  local out="$cache/tools/consul-template-$CONSUL_TEMPLATE_VERSION"
  if cached "$out"; then link_tool consul-template "$out"; return; fi
  log "consul-template $CONSUL_TEMPLATE_VERSION: compiling"
  mkdir -p "$out"
  GOBIN="$out" go install "${goflags_build[@]}" "github.com/hashicorp/consul-template@v$CONSUL_TEMPLATE_VERSION"
  touch "$out/.complete"; link_tool consul-template "$out"
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(pulumi language-python language-yaml provider-docker consul-template consul)
for tool in "${tools[@]}"; do
  start=$(date +%s)
  "build_${tool//-/_}"
  log "$tool ready ($(( $(date +%s) - start ))s)"
done
