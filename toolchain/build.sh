#!/usr/bin/env bash
# Builds the Pulumi engine, its Python language host, the Docker provider plugin, Consul and
# consul-template from the Go module proxy into a per-user cache keyed by version.
#
#   toolchain/build.sh [TOOL...]     TOOL: pulumi language-python provider-docker consul consul-template
#
# A tool already on PATH at the pinned version is linked, not rebuilt. A tool already in the cache
# is reused. Everything lands in "$BLUEGREEN_CACHE/bin" (default ~/.cache/bluegreen/bin).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${BLUEGREEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bluegreen}
bin="$cache/bin"
mkdir -p "$bin" "$cache/plugins" "$cache/tools" "$cache/src"

export GOFLAGS=-mod=mod
export CGO_ENABLED=0
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

build_pulumi() {
  local out="$cache/tools/pulumi-$PULUMI_VERSION"
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
  # The Python runtime scripts ship in the sdk module: the executor the language host runs, and
  # the dynamic-provider plugin.
  install -m 0755 "$src/sdk/python/cmd/pulumi-language-python-exec" "$out/"
  install -m 0755 "$src/sdk/python/dist/pulumi-resource-pulumi-python" "$out/"
  touch "$out/.complete"; link_tool pulumi "$out"
}

build_language_python() {
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
  # The CLI looks for its language hosts next to its own (resolved) binary and warns otherwise.
  cp -f "$out/pulumi-language-python" "$cache/tools/pulumi-$PULUMI_VERSION/pulumi-language-python"
  link_tool language-python "$cache/tools/pulumi-$PULUMI_VERSION"
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

build_consul() {
  local out="$cache/tools/consul-$CONSUL_VERSION"
  if cached "$out"; then link_tool consul "$out"; return; fi
  if command -v consul >/dev/null && consul version | grep -q "v$CONSUL_VERSION"; then
    mkdir -p "$out"; ln -sfn "$(command -v consul)" "$out/consul"; touch "$out/.complete"
    link_tool consul "$out"; return
  fi
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
  local out="$cache/tools/consul-template-$CONSUL_TEMPLATE_VERSION"
  if cached "$out"; then link_tool consul-template "$out"; return; fi
  log "consul-template $CONSUL_TEMPLATE_VERSION: compiling"
  mkdir -p "$out"
  GOBIN="$out" go install "${goflags_build[@]}" "github.com/hashicorp/consul-template@v$CONSUL_TEMPLATE_VERSION"
  touch "$out/.complete"; link_tool consul-template "$out"
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(pulumi language-python provider-docker consul-template consul)
for tool in "${tools[@]}"; do
  start=$(date +%s)
  "build_${tool//-/_}"
  log "$tool ready ($(( $(date +%s) - start ))s)"
done
