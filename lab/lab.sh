#!/usr/bin/env bash
# lab.sh: hosts on this machine that look like a real site's: each a network namespace with its
# own address on the lab bridge, its own Docker engine (socket, data root, exec root, bridge and
# address pool) and an sshd, so the platform reaches it as ssh://root@<address>.
#
#   lab.sh up                 create what is missing (idempotent; seconds when warm)
#   lab.sh down [--purge]     stop every host and remove the bridge (--purge: their disks too)
#   lab.sh status             one line per host: namespace, link, engine, ssh
#   lab.sh hosts              the hosts as JSON (name -> docker, address, bridgeAddress, dockerSocket)
#   lab.sh stop-host N        power host N off: every process in its namespace ends, the namespace goes
#   lab.sh start-host N       boot host N again (its engine restarts its containers)
#   lab.sh link-down N | link-up N   cut or restore host N's cable to the lab bridge
#
# Needs root, iproute2, iptables, dockerd and openssh-server (./bg lab installs them).
set -euo pipefail
# The engines and sshd started here outlive this script: they must not keep its caller's open
# files (a lock held around ./bg would be held for as long as they run). 255 is bash's own.
for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ] && [ "$n" -lt 255 ]; then eval "exec $n>&-"; fi; done 2>/dev/null

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
source "$here/lab.env"
source "$repo/toolchain/versions.env"
cache=${BLUEGREEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bluegreen}
labdir=$cache/lab                 # keys, configuration and logs
run=/run/bluegreen-lab            # sockets and pid files
disks=/var/lib/bluegreen-lab      # each host's Docker data root: its "disk", kept across restarts
base_image=${BLUEGREEN_BASE_IMAGE:-bluegreen/base:bookworm}
# Images no registry serves: the agents', what services build FROM, and the registry's and the
# proxy's (a platform may run them on a lab host).
images=("bluegreen/consul:$CONSUL_IMAGE_VERSION" "$base_image" "bluegreen/registry:2.8"
        "bluegreen/proxy:$PROXY_IMAGE_VERSION")

gateway=$LAB_PREFIX.1
address() { echo "$LAB_PREFIX.$((LAB_HOST_OFFSET + $1))"; }
netns() { echo "bg-lab$1"; }
cable() { echo "bglab$1"; }       # the host's veth end on the bridge
socket() { echo "$run/lab$1/docker.sock"; }
bip() { echo "$LAB_BIP_PREFIX.$1.1"; }
pool() { echo "$LAB_POOL_PREFIX.$(($1 * 16)).0/20"; }
engine() { docker -H "unix://$(socket "$1")" "${@:2}"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
hosts() { seq 1 "$LAB_HOSTS"; }
has_netns() { [[ " $(ip netns list | cut -d' ' -f1 | tr '\n' ' ') " == *" $1 "* ]]; }

wait_for() { # SECONDS WHAT COMMAND...: poll until COMMAND succeeds
  local seconds=$1 what=$2; shift 2
  for _ in $(seq 1 $((seconds * 5))); do "$@" >/dev/null 2>&1 && return; sleep 0.2; done
  echo "lab: $what did not come up within ${seconds}s" >&2; return 1
}

ensure_bridge() {
  if ! ip link show "$LAB_BRIDGE" >/dev/null 2>&1; then
    ip link add "$LAB_BRIDGE" type bridge
    ip addr add "$gateway/24" dev "$LAB_BRIDGE"
  fi
  ip link set "$LAB_BRIDGE" up
  local rule
  while read -r rule; do
    # shellcheck disable=SC2086
    iptables -C $rule 2>/dev/null || iptables -I $rule
  done < <(lab_rules)
  # shellcheck disable=SC2046
  iptables -t nat -C $(nat_rule) 2>/dev/null || iptables -t nat -A $(nat_rule)
}

lab_rules() { # the firewall rules the lab needs, one per line (chain and match)
  local chain=DOCKER-USER
  iptables -n -L "$chain" >/dev/null 2>&1 || chain=FORWARD
  # Docker sets FORWARD to DROP and bridged frames pass through it (br_netfilter): let the hosts
  # talk to each other (Consul gossip and RPC) across the lab bridge, and reach the package
  # registries like any machine of a site (their builds run apt-get).
  echo "$chain -i $LAB_BRIDGE -o $LAB_BRIDGE -j ACCEPT"
  echo "$chain -i $LAB_BRIDGE ! -o $LAB_BRIDGE -j ACCEPT"
  echo "$chain -o $LAB_BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
}

nat_rule() { echo "POSTROUTING -s $LAB_PREFIX.0/24 ! -o $LAB_BRIDGE -j MASQUERADE"; }

ensure_keys() {
  mkdir -p "$labdir"; chmod 700 "$labdir"
  [ -f "$labdir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C bluegreen-lab -f "$labdir/id_ed25519"
  cp "$labdir/id_ed25519.pub" "$labdir/authorized_keys"
  local i
  for i in $(hosts); do
    mkdir -p "$labdir/lab$i"
    [ -f "$labdir/lab$i/ssh_host_ed25519_key" ] ||
      ssh-keygen -q -t ed25519 -N '' -C "lab$i" -f "$labdir/lab$i/ssh_host_ed25519_key"
  done
  for i in $(hosts); do
    echo "$(address "$i") $(cut -d' ' -f1,2 "$labdir/lab$i/ssh_host_ed25519_key.pub")"
  done > "$labdir/known_hosts"
  # The deployer reaches the hosts as a real site's would: by address, with its key in ssh config.
  # Connections are shared (ControlMaster): the Docker provider opens one per engine call.
  cat > "$labdir/ssh_config" <<CONF
Host $LAB_PREFIX.*
  User root
  IdentityFile $labdir/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $labdir/known_hosts
  StrictHostKeyChecking yes
  ConnectTimeout 5
  ServerAliveInterval 2
  ServerAliveCountMax 3
  ControlMaster auto
  ControlPath $run/ssh-%C
  ControlPersist 120
CONF
  mkdir -p "$HOME/.ssh" "$run"; chmod 700 "$HOME/.ssh"; touch "$HOME/.ssh/config"
  local include="Include $labdir/ssh_config"
  if ! grep -qxF "$include" "$HOME/.ssh/config"; then
    # First in the file: an Include after a Host line would only apply inside that block.
    { echo "$include"; cat "$HOME/.ssh/config"; } > "$HOME/.ssh/config.new"
    mv "$HOME/.ssh/config.new" "$HOME/.ssh/config"
  fi
}

ensure_namespace() { # N: the namespace, its cable to the bridge and its address
  local i=$1 ns; ns=$(netns "$1")
  has_netns "$ns" || ip netns add "$ns"
  if ! ip link show "$(cable "$i")" >/dev/null 2>&1; then
    ip link add "$(cable "$i")" type veth peer name eth0 netns "$ns"
    ip link set "$(cable "$i")" master "$LAB_BRIDGE"
  fi
  ip link set "$(cable "$i")" up
  ip -n "$ns" link set lo up
  # (Compared as strings: `| grep -q` fails under pipefail when grep stops reading early.)
  [[ $(ip -n "$ns" addr show dev eth0) == *" $(address "$i")/"* ]] ||
    ip -n "$ns" addr add "$(address "$i")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route replace default via "$gateway"
}

ensure_engine() { # N: dockerd inside the namespace
  local i=$1 ns dir; ns=$(netns "$1"); dir=$run/lab$i
  engine "$i" info >/dev/null 2>&1 && return
  mkdir -p "$dir" "$disks/lab$i"
  alive "$dir/docker.pid" || rm -f "$dir/docker.pid"
  rm -f "$dir/exec/containerd/containerd.sock"
  # No insecure registries: the registry on a lab address serves TLS, and the platform puts its
  # CA in /etc/docker/certs.d (this machine's, shared by every lab engine).
  # nsenter keeps this machine's mounts (ip netns exec would remount /sys without cgroups).
  # Its own config file: /etc/docker/daemon.json belongs to this machine's engine.
  echo '{}' >"$dir/daemon.json"
  nsenter --net="/run/netns/$ns" nohup dockerd --config-file "$dir/daemon.json" --host "unix://$(socket "$i")" --data-root "$disks/lab$i" \
    --exec-root "$dir/exec" --pidfile "$dir/docker.pid" --bip "$(bip "$i")/24" \
    --default-address-pool "base=$(pool "$i"),size=24" \
    >"$labdir/lab$i/dockerd.log" 2>&1 &
  wait_for 60 "the engine of lab$i (log: $labdir/lab$i/dockerd.log)" engine "$i" info
}

ensure_sshd() { # N: sshd inside the namespace; its sessions talk to this host's engine
  local i=$1 ns; ns=$(netns "$1")
  alive "$run/lab$i/sshd.pid" && return
  mkdir -p /run/sshd "$run/lab$i"
  cat > "$labdir/lab$i/sshd_config" <<CONF
ListenAddress $(address "$i")
HostKey $labdir/lab$i/ssh_host_ed25519_key
PidFile $run/lab$i/sshd.pid
AuthorizedKeysFile $labdir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
# One multiplexed connection carries every call of the Docker provider.
MaxSessions 200
MaxStartups 100:30:200
SetEnv DOCKER_HOST=unix://$(socket "$i")
CONF
  nsenter --net="/run/netns/$ns" /usr/sbin/sshd -f "$labdir/lab$i/sshd_config" -E "$labdir/lab$i/sshd.log"
  wait_for 10 "sshd of lab$i" alive "$run/lab$i/sshd.pid"
}

ensure_images() { # the images no registry serves, in every host's engine (loaded once per image ID)
  local image id i tar
  # BLUEGREEN_LAB_IMAGES=0 keeps the hosts' images as they are (e.g. built into them directly).
  [ "${BLUEGREEN_LAB_IMAGES:-1}" != 0 ] || return 0
  for image in "${images[@]}"; do
    id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) ||
      { echo "lab: image $image is missing; run ./bg setup first" >&2; return 1; }
    tar=
    for i in $(hosts); do
      [ "$(engine "$i" image inspect -f '{{.Id}}' "$image" 2>/dev/null)" = "$id" ] && continue
      if [ -z "$tar" ]; then tar=$(mktemp -p "$labdir" image.XXXXXX); docker save -o "$tar" "$image"; fi
      engine "$i" load -q -i "$tar" >/dev/null
      echo "    lab$i: loaded $image"
    done
    [ -z "$tar" ] || rm -f "$tar"
  done
}

ensure_host() { ensure_namespace "$1"; ensure_engine "$1"; ensure_sshd "$1"; }

check_ssh() { # N: the engine answers over ssh, as the Docker provider will reach it
  ssh -o BatchMode=yes "root@$(address "$1")" docker info --format '{{.Name}}' >/dev/null
}

up() {
  local start i; start=$(date +%s.%N)
  ensure_bridge
  ensure_keys
  for i in $(hosts); do
    # Engines an older lab.sh started pulled from lab registries without TLS: start them anew.
    if alive "$run/lab$i/docker.pid" &&
        [[ $(tr '\0' ' ' <"/proc/$(cat "$run/lab$i/docker.pid")/cmdline") == *--insecure-registry* ]]; then
      echo "    lab$i: restarting its engine without --insecure-registry"
      stop_host "$i"
    fi
  done
  for i in $(hosts); do ensure_host "$i" & done
  wait_all
  ensure_images
  for i in $(hosts); do check_ssh "$i" || { echo "lab: ssh to lab$i failed" >&2; return 1; }; done
  printf '    lab: %d hosts up in %.1fs (%s.%d-%d)\n' "$LAB_HOSTS" "$(echo "$(date +%s.%N) - $start" | bc)" \
    "$LAB_PREFIX" $((LAB_HOST_OFFSET + 1)) $((LAB_HOST_OFFSET + LAB_HOSTS))
}

wait_all() { # waits for every background job, failing if one did
  local failed=0 job
  for job in $(jobs -p); do wait "$job" || failed=1; done
  return $failed
}

stop_host() { # N: like pulling the plug after an orderly shutdown of the engine
  local i=$1 ns pid; ns=$(netns "$1")
  if alive "$run/lab$i/docker.pid"; then
    pid=$(cat "$run/lab$i/docker.pid"); kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  if has_netns "$ns"; then
    # Whatever is left in the namespace (sshd, its sessions, shims) was started by the lab.
    for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns delete "$ns"
  fi
  ip link delete "$(cable "$i")" 2>/dev/null || true
  rm -f "$run/lab$i/sshd.pid" "$run/lab$i/docker.pid"
  # A shared ssh connection to the old host would hang until its keep-alives fail.
  ssh -O exit "root@$(address "$i")" 2>/dev/null || true
}

down() {
  local i
  # Every host there is, also those of a larger count than the configured one.
  for i in $( (hosts; ip netns list | sed -n 's/^bg-lab\([0-9]\+\).*/\1/p') | sort -nu); do
    stop_host "$i"
  done
  if ip link show "$LAB_BRIDGE" >/dev/null 2>&1; then ip link delete "$LAB_BRIDGE"; fi
  local rule
  while read -r rule; do
    # shellcheck disable=SC2086
    iptables -D $rule 2>/dev/null || true
  done < <(lab_rules)
  # shellcheck disable=SC2046
  iptables -t nat -D $(nat_rule) 2>/dev/null || true
  if [ "${1:-}" = --purge ]; then
    # A stopped engine leaves the mount of its network namespace handle behind.
    local mount
    for mount in $(awk -v run="$run/" -v disks="$disks/" 'index($2, run) == 1 || index($2, disks) == 1 {print $2}' /proc/mounts | sort -r); do
      umount "$mount" 2>/dev/null || umount -l "$mount"
    done
    rm -rf "$disks" "$run"
  fi
  echo "    lab: down"
}

status() {
  local i ns link engine_state ssh_state
  for i in $(hosts); do
    ns=$(netns "$i")
    link=$(ip -br link show "$(cable "$i")" 2>/dev/null | awk '{print $2}'); link=${link:-absent}
    engine_state=$(engine "$i" info --format '{{.ContainersRunning}}/{{.Containers}}' 2>/dev/null) || engine_state=down
    ssh_state=$(timeout 10 ssh -o BatchMode=yes "root@$(address "$i")" docker info --format ok 2>/dev/null) || ssh_state=down
    printf 'lab%d  %-15s netns %-7s link %-7s containers %-7s ssh %s\n' "$i" "$(address "$i")" \
      "$(has_netns "$ns" && echo up || echo absent)" "$link" "$engine_state" "$ssh_state"
  done
}

hosts_json() {
  local i sep=""
  printf '{'
  for i in $(hosts); do
    printf '%s"lab%d": {"docker": "ssh://root@%s", "address": "%s", "bridgeAddress": "%s", "dockerSocket": "%s"}' \
      "$sep" "$i" "$(address "$i")" "$(address "$i")" "$(bip "$i")" "$(socket "$i")"
    sep=", "
  done
  printf '}\n'
}

[ "$(id -u)" = 0 ] || { echo "lab.sh needs root (network namespaces, bridges, dockerd)" >&2; exit 1; }
cmd=${1:-status}; shift || true
case "$cmd" in
  up) up ;;
  down) down "$@" ;;
  status) status ;;
  hosts) hosts_json ;;
  stop-host) stop_host "${1:?host number}" ;;
  start-host) ensure_bridge; ensure_host "${1:?host number}" ;;
  link-down) ip link set "$(cable "${1:?host number}")" down ;;
  link-up) ip link set "$(cable "${1:?host number}")" up ;;
  *) echo "lab.sh: unknown command '$cmd' (up, down, status, hosts, stop-host, start-host, link-down, link-up)" >&2
     exit 2 ;;
esac
