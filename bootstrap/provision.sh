# Machine provisioning for ./bg (sourced by it, with its environment): Debian packages, the Python
# environment, the Docker engine, the toolchain, the platform images, the second engine (host2), the
# lab, and the state backend. Every step is idempotent and prints its elapsed time; `setup` runs
# them all.
# shellcheck shell=bash
# shellcheck disable=SC2154  # repo, cache and base_image are set by ./bg before it sources this

step_no=0
step() { # NAME COMMAND...: run one set-up step and print its elapsed time
  local name=$1 start; shift
  step_no=$((step_no + 1)); start=$(date +%s.%N)
  printf '==> [%d] %s\n' "$step_no" "$name"
  "$@"
  printf '    done in %.1fs\n' "$(echo "$(date +%s.%N) - $start" | bc)"
}

# Daemons started here must not keep the caller's open files: a lock held around ./bg (flock)
# would otherwise live as long as the daemon.
without_inherited_files='for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done'

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() { # PACKAGE...: install the Debian packages that are missing
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  echo "    installing ${missing[*]} from Debian"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_python() {
  local stamp="$repo/.venv/.requirements.sha256" want
  want=$(cat "$repo/requirements.txt" "$repo/pyproject.toml" | sha256sum | cut -c1-64)
  [ -x "$repo/.venv/bin/python" ] || python3 -m venv "$repo/.venv"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$repo/.venv/bin/pip" install -q -r "$repo/requirements.txt"
    # The project itself, editable: components/, delivery/ and policies/ import from anywhere.
    "$repo/.venv/bin/pip" install -q --no-deps -e "$repo"
    echo "$want" > "$stamp"
  fi
}

setup_host_packages() {
  apt_install bc debootstrap ca-certificates curl git iproute2 iptables
  # The static checks (tests/unit/test_static_checks.py) run shellcheck on every script.
  apt_install shellcheck
  # Headless Chromium loads the service catalogue in the end-to-end tests.
  apt_install chromium
  if ! command -v go >/dev/null; then
    echo "bg: Go >= 1.24 is needed to build the toolchain (Debian's golang-go is too old);" \
         "put it on PATH (e.g. /usr/local/go/bin) and run again" >&2
    exit 1
  fi
}

# Address pools for the networks dockerd makes: 1024 /24s instead of Docker's own 31, so a host
# carries hundreds of services with dependencies (each has a private network per environment).
# Clear of docker0 (172.17/16, pinned: with pools set, dockerd would take docker0's from them, and
# stacks name the bridge address) and of host2's bridge and pool (172.30-31/16).
docker_settings='{"default-address-pools": [{"base": "172.20.0.0/14", "size": 24}], "bip": "172.17.0.1/16"}'

setup_docker() {
  if docker info >/dev/null 2>&1; then echo "    using the Docker engine at $DOCKER_HOST"; return; fi
  command -v dockerd >/dev/null || apt_install docker.io
  # Only the settings a site has not made itself are added.
  as_root mkdir -p /etc/docker
  as_root python3 - "$docker_settings" <<'PY'
import json, os, sys
path, wanted = "/etc/docker/daemon.json", json.loads(sys.argv[1])
current = json.load(open(path)) if os.path.exists(path) else {}
added = {key: value for key, value in wanted.items() if key not in current}
if added:
    with open(path, "w") as handle:
        json.dump({**current, **added}, handle)
    print(f"    /etc/docker/daemon.json: added {json.dumps(added)}")
PY
  echo "    starting dockerd (log: $cache/dockerd.log)"
  mkdir -p "$cache"
  # No init system here: dockerd runs in the background for as long as the machine does.
  as_root bash -c "$without_inherited_files; nohup dockerd >'$cache/dockerd.log' 2>&1 &"
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  echo "dockerd did not answer within 60s; see $cache/dockerd.log" >&2; exit 1
}

setup_toolchain() {
  bash "$repo/toolchain/build.sh"
  # The Docker provider is found by exact version in PULUMI_HOME, as if `pulumi plugin install`ed.
  local version; version=$("$repo/.venv/bin/python" -c 'import json,importlib.resources as r; print(json.loads((r.files("pulumi_docker")/"pulumi-plugin.json").read_text())["version"])')
  if [ ! -x "$PULUMI_HOME/plugins/resource-docker-v$version/pulumi-resource-docker" ] ||
     ! cmp -s "$(readlink -f "$cache/plugins/pulumi-resource-docker")" "$PULUMI_HOME/plugins/resource-docker-v$version/pulumi-resource-docker"; then
    pulumi plugin install resource docker "$version" --file "$(readlink -f "$cache/plugins/pulumi-resource-docker")" >/dev/null
  fi
  pulumi version
}

# A second Docker engine on this machine stands in for a second host: its own socket, data root,
# exec root, bridge and subnet. Published ports still land on 127.0.0.1 (docker-proxy).
host2_socket=/var/run/bluegreen-host2.sock
host2_bridge=bg-host2
host2_subnet=172.31.250.1/24
host2_pool=172.30.0.0/16   # the networks it creates: forwarding between them is allowed below

setup_second_host() {
  if [ "${BLUEGREEN_SECOND_HOST:-1}" = 0 ]; then echo "    skipped (BLUEGREEN_SECOND_HOST=0)"; return; fi
  if ! docker -H "unix://$host2_socket" info >/dev/null 2>&1; then
    apt_install iproute2
    ip link show "$host2_bridge" >/dev/null 2>&1 || {
      as_root ip link add "$host2_bridge" type bridge
      as_root ip addr add "$host2_subnet" dev "$host2_bridge"
      as_root ip link set "$host2_bridge" up; }
    echo "    starting the second engine at unix://$host2_socket (log: $cache/dockerd-host2.log)"
    # Files left by an engine that died would stop or stall the new one.
    if [ -f /var/run/bluegreen-host2.pid ] && ! kill -0 "$(cat /var/run/bluegreen-host2.pid)" 2>/dev/null; then
      as_root rm -f /var/run/bluegreen-host2.pid
    fi
    as_root rm -f /var/run/bluegreen-host2/containerd/containerd.sock
    # Restarting with its old network store makes this engine delete the first engine's docker0
    # (they share one kernel). A stand-in host can afford to start without its old networks.
    as_root rm -f /var/lib/bluegreen-host2/network/files/local-kv.db
    # Its own iptables rules would fight the first engine's; it needs none for 127.0.0.1 ports.
    # Its own (empty) config file: the default one, /etc/docker/daemon.json, is the first engine's,
    # and dockerd refuses a setting given both there and as a flag.
    echo '{}' >"$cache/dockerd-host2.json"
    as_root bash -c "$without_inherited_files; nohup dockerd --config-file '$cache/dockerd-host2.json' \
      --host 'unix://$host2_socket' --data-root /var/lib/bluegreen-host2 \
      --exec-root /var/run/bluegreen-host2 --pidfile /var/run/bluegreen-host2.pid \
      --bridge '$host2_bridge' --default-address-pool base=$host2_pool,size=24 \
      --iptables=false --ip-masq=false >'$cache/dockerd-host2.log' 2>&1 &"
    for _ in $(seq 1 60); do docker -H "unix://$host2_socket" info >/dev/null 2>&1 && break; sleep 1; done
    docker -H "unix://$host2_socket" info >/dev/null 2>&1 ||
      { echo "second dockerd did not answer; see $cache/dockerd-host2.log" >&2; exit 1; }
  fi
  # The first engine sets FORWARD to DROP; without rules of its own, containers of the second
  # engine could not talk to each other (a service to its database) across its bridges.
  local chain=DOCKER-USER
  as_root iptables -n -L "$chain" >/dev/null 2>&1 || chain=FORWARD
  as_root iptables -C "$chain" -s "$host2_pool" -d "$host2_pool" -j ACCEPT 2>/dev/null ||
    as_root iptables -I "$chain" -s "$host2_pool" -d "$host2_pool" -j ACCEPT
  # The platform's agent image must be on every host (no public registry to pull it from).
  local image="bluegreen/consul:$CONSUL_IMAGE_VERSION"
  if [ "$(docker image inspect -f '{{.Id}}' "$image")" != \
       "$(docker -H "unix://$host2_socket" image inspect -f '{{.Id}}' "$image" 2>/dev/null)" ]; then
    docker save "$image" | docker -H "unix://$host2_socket" load -q >/dev/null
  fi
  echo "    host2: unix://$host2_socket"
}

build_image() { # TAG DIR [FILES OR FOLDERS TO COPY INTO THE CONTEXT...]
  local tag=$1 dir=$2 context; shift 2
  context=$(mktemp -d); cp -r "$dir"/. "$context"
  for f in "$@"; do cp -r "$(readlink -f "$f")" "$context/"; done
  # Debian's engine has no buildx: the legacy builder works, minus its deprecation banner.
  docker build -q --build-arg "BASE_IMAGE=$base_image" -t "$tag" "$context" 2>&1 >/dev/null |
    { grep -vE 'DEPRECATED|legacy builder|buildx|^\s*$' >&2 || true; }
  rm -rf "$context"; echo "    $tag"
}

stage_package() { # DIR: the project's package, as the consul image installs it
  mkdir -p "$1"
  cp -r "$repo/pyproject.toml" "$1/"
  cp -rL "$repo/bluegreen" "$1/"   # its links to components/, delivery/, policies/ as folders
}

setup_images() {
  if ! docker image inspect "$base_image" >/dev/null 2>&1; then
    echo "    making $base_image with debootstrap (about a minute)"
    as_root bash "$repo/images/base/build.sh" "$base_image"
  fi
  local package; package=$(mktemp -d)
  stage_package "$package/package"
  build_image "bluegreen/consul:$CONSUL_IMAGE_VERSION" "$repo/images/consul" "$cache/bin/consul" \
    "$package/package"
  rm -rf "$package"
  build_image "bluegreen/proxy:$PROXY_IMAGE_VERSION" "$repo/images/proxy" "$cache/bin/consul-template"
  build_image "bluegreen/registry:2.8" "$repo/images/registry"
  build_image "bluegreen/prometheus:$PROMETHEUS_IMAGE_VERSION" "$repo/images/prometheus"
}

setup_lab() {
  if [ "${BLUEGREEN_LAB:-1}" = 0 ]; then echo "    skipped (BLUEGREEN_LAB=0)"; return; fi
  apt_install openssh-server openssh-client iproute2 iptables
  as_root bash "$repo/lab/lab.sh" up
}

select_stack() { # STACK: create it on first use (its config file under stacks/ already exists)
  (cd "$repo" && { pulumi stack select "$1" 2>/dev/null || pulumi stack init "$1" >/dev/null; })
}

setup() {
  mkdir -p "$cache" "${PULUMI_BACKEND_URL#file://}"
  step "host packages (Debian)" setup_host_packages
  step "Python environment (.venv)" setup_python
  step "Docker engine" setup_docker
  step "toolchain: pulumi, language host, docker provider, consul, consul-template" setup_toolchain
  step "images: base, consul, proxy, registry, prometheus" setup_images
  step "second Docker host (host2)" setup_second_host
  step "lab hosts (network namespaces, engines over ssh)" setup_lab
  step "state backend ($PULUMI_BACKEND_URL) and stack local" select_stack local
}

