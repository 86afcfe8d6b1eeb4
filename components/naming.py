"""Names, KV keys, colours and registration payloads: the one module that makes them.

Standard library only: the consul image's registrator, bake watchdog and delivery exporter import
it from the project's package, which that image installs without Pulumi."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import stat
import zlib
from typing import Any, Iterable
from urllib.parse import urlparse

COLOURS = ("blue", "green")
KV_ROOT = "bluegreen"
DIGEST_REF = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
# The proxy names the route and colour of every answer (images/proxy/routes.conf.ctmpl); a call
# from inside the platform that carries the preview header reaches the offline colour. The proxy
# strips all three from clients and upstreams before setting its own (images/proxy/proxy-headers.conf).
PROXY_ROUTE_HEADER = "X-Bluegreen-Route"
PROXY_COLOUR_HEADER = "X-Bluegreen-Colour"
PROXY_PREVIEW_HEADER = "X-Bluegreen-Preview"
PROXY_HEADERS = (PROXY_ROUTE_HEADER, PROXY_COLOUR_HEADER, PROXY_PREVIEW_HEADER)
# The proxy joins environment, service and colour with this (upstream `<env>--<service>--<colour>`,
# marker file `<env>--<service>.green`: images/proxy/*.ctmpl), so no such name may hold it: else
# service `a--b` of `prod` and service `b` of `prod--a` would share an upstream and a marker.
PROXY_JOINER = "--"
# First path segments the proxy serves itself: an environment of that name would share them
# (environment `preview`'s /preview/x/ is the preview URI of environment x).
PROXY_PATHS = ("preview", "catalogue")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"   # UTC, as release histories and bake records write times
BAKE_STATUSES = ("rolling", "baking", "baked", "rolled-back", "breached", "superseded", "aborted")

# Type tokens of the dynamic resources: `dynamic.Resource` subclasses declare (module, name), and
# Pulumi makes `pulumi-python:dynamic/<module>:<name>` of them. Stacks made before these existed
# hold every dynamic resource as LEGACY_DYNAMIC_TYPE; the classes alias it so nothing is replaced.
CONSUL_KEY_TYPE = ("consul", "Key")
REGISTRATION_TYPE = ("consul", "Registration")
HEALTH_GATE_TYPE = ("consul", "HealthGate")
ACL_TOKEN_TYPE = ("consul", "AclToken")
GENERATED_SECRET_TYPE = ("platform", "GeneratedSecret")
REGISTRY_CERTIFICATE_TYPE = ("platform", "RegistryCertificate")
HTPASSWD_TYPE = ("platform", "Htpasswd")
LEGACY_DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"


def dynamic_type(module_and_name: tuple[str, str]) -> str:
    """The full type token Pulumi gives a dynamic resource class declared with (module, name)."""
    module, name = module_and_name
    return f"pulumi-python:dynamic/{module}:{name}"


def joined_name_problem(name: str) -> str:
    """Why `name` cannot be a service or environment name the proxy joins ('' when it can)."""
    if PROXY_JOINER not in name:
        return ""
    return (f"{name!r} holds {PROXY_JOINER!r}, which the proxy puts between environment and "
            f"service names (service a--b of prod and service b of prod--a would share an "
            f"upstream); use single '-', e.g. {re.sub('-+', '-', name)!r}")


def offline_colour(live: str) -> str:
    """The colour that is not serving: where the next version goes."""
    if live not in COLOURS:
        raise ValueError(f"colour must be one of {COLOURS}, got {live!r}")
    return COLOURS[1 - COLOURS.index(live)]


def alias_root() -> str:
    """Where every environment's aliases live: `<root><env>/<service>`."""
    return f"{KV_ROOT}/aliases/"


def alias_key(environment: str, service: str) -> str:
    """The KV key whose value is the live colour of a service in an environment."""
    return f"{alias_root()}{environment}/{service}"


def routes_prefix(environment: str) -> str:
    """Where an environment's routes and route claims live."""
    return f"{KV_ROOT}/routes/{environment}/"


def route_key(environment: str, service: str) -> str:
    """The KV key holding the path segment under which the proxy serves a service."""
    return f"{routes_prefix(environment)}{service}"


# Route claims sit beside the routes (the deployer already writes that tree) under a folder no
# service can be named (names start with a letter), so no claim is ever read as a service's route.
ROUTE_CLAIMS = "_claims"


def route_claim_key(environment: str, route: str) -> str:
    """The KV key naming the service that holds `route` in an environment: created only if absent
    (check-and-set), so one service per route even across stacks updating at the same time."""
    return f"{routes_prefix(environment)}{ROUTE_CLAIMS}/{route}"


def split_root() -> str:
    """Where every environment's splits live: `<root><env>/<service>`."""
    return f"{KV_ROOT}/splits/"


def split_key(environment: str, service: str) -> str:
    """The KV key holding a service's split (model.split): the share of its stable traffic on the
    offline colour, how a client stays on its colour, and the cohorts sent to a chosen colour."""
    return f"{split_root()}{environment}/{service}"


SPLIT_DIR = "/var/lib/bluegreen/split"   # the proxy's split markers (apply-aliases keeps them)
SPLIT_COOKIE = "bluegreen_client"        # the cookie that keeps a client on its side of a split


def drain_timeout_key() -> str:
    """The KV key holding how long the proxy lets retired workers (and their long-lived
    connections) drain after a reload: nginx's worker_shutdown_timeout, read live."""
    return f"{KV_ROOT}/proxy/drain-timeout"


def preview_from_key() -> str:
    """The KV key holding the networks (CIDRs, space-separated) whose clients may use /preview/
    on the proxy's public listener besides its own host."""
    return f"{KV_ROOT}/proxy/preview-from"


def prometheus_address_key() -> str:
    """The KV key holding Prometheus's address:port, where the proxy sends the catalogue page's
    read-only queries (/catalogue/api/v1/query and query_range)."""
    return f"{KV_ROOT}/proxy/prometheus"


def bridge_listen_key() -> str:
    """The KV key holding a further address:port the proxy listens on: the platform host's bridge
    address, where containers reach the services they call."""
    return f"{KV_ROOT}/proxy/bridge-listen"


def proxies_key() -> str:
    """The KV key holding the site's proxies as JSON ({"virtualAddress": ..., "proxies": [{"host",
    "url"}]}): what the catalogue lists."""
    return f"{KV_ROOT}/proxy/proxies"


def proxy_container(stack: str, host: str, several: bool) -> str:
    """The proxy's container on `host`: one proxy keeps the platform's single name."""
    return docker_name(stack, "proxy", host) if several else docker_name(stack, "proxy")


def vrrp_container(stack: str, host: str) -> str:
    """keepalived beside the proxy on `host`, moving the virtual address."""
    return docker_name(stack, "vrrp", host)


def vrrp_router_id(stack: str) -> int:
    """The VRRP virtual router id (1-255) of a stack's proxies: stable, and distinct between the
    stacks of one network unless two of them hash alike (they also talk unicast only)."""
    return zlib.crc32(stack.encode()) % 255 + 1


def proxy_port(url: str) -> int:
    """The port of the proxy's base URL (http://127.0.0.1:18080) or host:port."""
    parsed = urlparse(url if "//" in url else f"//{url}")
    if parsed.port is None:
        raise ValueError(f"the proxy address {url!r} names no port")
    return parsed.port


def call_variable(callee: str) -> str:
    """The environment variable holding a callee's URL: vizconfig -> VIZCONFIG_URL."""
    return callee.upper().replace("-", "_") + "_URL"


# What the platform sets in every service container (components/service/colour_slot.py), besides
# each callee's call_variable: a service's own value would meet the platform's in one container.
PLATFORM_VARIABLES = ("SERVICE_NAME", "SERVICE_VERSION", "SERVICE_COLOUR", "SERVICE_ENVIRONMENT",
                      "CONSUL_HTTP_ADDR", "SERVICE_CONFIG_PREFIX", "CONSUL_HTTP_TOKEN_FILE")


def reserved_variables(calls: Iterable[str] = ()) -> dict[str, str]:
    """Variable -> what the platform puts in it, for a service that calls `calls`."""
    return {**{name: "set by the platform" for name in PLATFORM_VARIABLES},
            **{call_variable(callee): f"the URL of callee {callee}" for callee in calls}}


def proxy_host(url: str) -> str:
    """The host name or address of the proxy's base URL (http://10.0.0.5:18080 -> 10.0.0.5)."""
    return urlparse(url if "//" in url else f"//{url}").hostname or ""


def caller_proxy_address(host_address: str, bridge_address: str, proxy_address: str) -> str:
    """Where containers on a host reach the proxy at `proxy_address`: over their host's bridge
    (the proxy's bridge listener) on the proxy's own host, or when the proxy's address names no
    host (loopback, 0.0.0.0); at the proxy's own address from every other host."""
    try:
        ip = ipaddress.ip_address(proxy_address)
        hostless = ip.is_loopback or ip.is_unspecified
    except ValueError:
        hostless = proxy_address in ("", "localhost")
    return bridge_address if hostless or proxy_address == host_address else proxy_address


def call_routes(calls: Iterable[str], routes: dict[str, str]) -> dict[str, str]:
    """Each callee at its route: a callee of this stack at the route its manifest names, one of
    another stack at its name."""
    return {callee: routes.get(callee, callee) for callee in calls}


def call_environment(address: str, port: int, environment: str,
                     routes: dict[str, str]) -> list[str]:
    """NAME=url entries for each callee (service -> route): its stable URI at the proxy, as the
    caller's containers reach it (at `address`, see caller_proxy_address)."""
    return [f"{call_variable(callee)}=http://{address}:{port}{stable_path(environment, route)}"
            for callee, route in sorted(routes.items())]


def nginx_duration(seconds: float) -> str:
    """A duration as nginx (and a service reading the drain key) understands it: whole ms."""
    return f"{round(seconds * 1000)}ms"


def stable_path(environment: str, route: str) -> str:
    """Where the proxy serves a service's live colour."""
    return f"/{environment}/{route}/"


def preview_path(environment: str, route: str) -> str:
    """Where the proxy serves a service's offline colour."""
    return f"/preview/{environment}/{route}/"


def health_probe_path(environment: str, route: str, health_path: str, preview: bool = False) -> str:
    """A service's health path under its stable (or preview) URI at the proxy: where the flip is
    proven and a new deploy's preview awaited, so the answer depends on the instance alone, never
    on the services it calls (a caller answers 502 while its callee has no route yet)."""
    base = preview_path(environment, route) if preview else stable_path(environment, route)
    return base + health_path.lstrip("/")


def proxy_route(environment: str, service: str, preview: bool = False) -> str:
    """The X-Bluegreen-Route header the proxy sets on a service's answers."""
    return f"{'preview/' if preview else ''}{environment}/{service}"


def config_prefix(environment: str, service: str) -> str:
    """The KV prefix under which a service's configuration is uploaded."""
    return f"{KV_ROOT}/config/{environment}/{service}/"


def release_root() -> str:
    """Where every service's release records live."""
    return f"{KV_ROOT}/releases/"


def release_prefix(service: str) -> str:
    """The KV prefix of a service's releases: `<prefix><version>` -> its digest and runtime spec.
    Shared by every environment on the platform: a version names one image everywhere."""
    return f"{release_root()}{service}/"


def slot_key(environment: str, service: str, colour: str) -> str:
    """The KV key recording which release a colour of a service runs in an environment."""
    return f"{KV_ROOT}/slots/{environment}/{service}/{colour}"


def history_root() -> str:
    """Where every environment's release histories live: `<root><env>/<service>/<release>`."""
    return f"{KV_ROOT}/history/"


def history_prefix(environment: str, service: str) -> str:
    """The KV prefix of a service's release history in an environment: `<prefix><release>`."""
    return f"{history_root()}{environment}/{service}/"


def went_live_entry(entry: dict[str, Any], now: str) -> dict[str, Any]:
    """A history entry with `liveAt` moved to `now` (a flip to it); `firstLiveAt` keeps when it
    first went live (its earlier `liveAt` where an entry predates the field): a rollback to a
    release is no new deployment of it (model.scoreboard)."""
    return {**entry, "liveAt": now, "firstLiveAt": entry.get("firstLiveAt") or entry.get("liveAt") or now}


def delivery_prefix() -> str:
    """The KV prefix of the delivery metrics: `<prefix><env>/<service>` (model.scoreboard)."""
    return f"{KV_ROOT}/delivery/"


def delivery_key(environment: str, service: str) -> str:
    """The KV key of a service's delivery metrics in an environment (the exporter keeps it)."""
    return f"{delivery_prefix()}{environment}/{service}"


def bake_prefix() -> str:
    """The KV prefix of every bake record: what the watchdog waits on."""
    return f"{KV_ROOT}/bake/"


def bake_key(environment: str, service: str) -> str:
    """The KV key of a service's bake record: the last flip of its alias while it is watched."""
    return f"{bake_prefix()}{environment}/{service}"


def audit_prefix(environment: str, service: str = "") -> str:
    """The KV prefix of the audit trail of an environment, or of one service in it: one key per
    event, `<prefix><service>/<audit_stamp>`, so the keys sort by time."""
    return f"{KV_ROOT}/audit/{environment}/" + (f"{service}/" if service else "")


AUDIT_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def audit_stamp(moment: datetime.datetime, suffix: str) -> str:
    """An audit key's last part: the UTC time to the microsecond, then `suffix` (two events of one
    microsecond stay two keys)."""
    return f"{moment.astimezone(datetime.timezone.utc).strftime(AUDIT_STAMP_FORMAT)}-{suffix}"


def audit_stamp_time(stamp: str) -> datetime.datetime | None:
    """The time of an audit key's last part (None: not an audit stamp)."""
    try:
        return datetime.datetime.strptime(stamp.split("-", 1)[0], AUDIT_STAMP_FORMAT).replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def lock_key(environment: str, service: str) -> str:
    """The KV key of a service's deploy lock in an environment, held by a Consul session."""
    return f"{KV_ROOT}/locks/{environment}/{service}"


def hooks_key(environment: str, service: str) -> str:
    """The KV key holding a service's hooks in an environment (model.hooks), for the watchdog's
    flips; not under any tree the proxy reads, so webhook URLs stay off the catalogue."""
    return f"{KV_ROOT}/hooks/{environment}/{service}"


def watchdog_lock_key() -> str:
    """The KV key the acting bake watchdog holds with its Consul session (model.election)."""
    return f"{KV_ROOT}/watchdog/leader"


def approval_key(environment: str, service: str) -> str:
    """The KV key of a flip held for approval (`confirm: manual`): what it would do while it
    waits, then who approved it (`./bg approve`); the flip deletes it."""
    return f"{KV_ROOT}/approvals/{environment}/{service}"


def catalogue_key(environment: str, service: str) -> str:
    """The KV key holding a service's catalogue entry (description, versions, digests)."""
    return f"{KV_ROOT}/catalogue/{environment}/{service}"


def acl_token_name(*parts: str) -> str:
    """The name of an ACL token and of its policy: `bluegreen-<actor>[-<scope>...]`, e.g.
    bluegreen-agent-local, bluegreen-deployer, bluegreen-service-production-vizconfig."""
    return "-".join(("bluegreen", *parts))


PLATFORM_TOKEN_FILE = "/etc/bluegreen/consul-token"    # a platform container's Consul token
SERVICE_TOKEN_FILE = "/etc/bluegreen-consul-token"      # a service container's own Consul token


def read_token_file(path: str) -> str:
    """The token in the file at `path` ('' without a path). Tokens travel as files, never in a
    container's environment, which `docker inspect` shows; read on every call, so a new one counts."""
    if not path:
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def docker_name(*parts: str) -> str:
    """The name of a Docker object the platform owns (container, network, volume): `bluegreen-...`,
    which is what `docker ps --filter name=bluegreen-` and the clean-up rely on."""
    return "-".join(("bluegreen", *parts))


DOCKER_CERTS_DIR = "/etc/docker/certs.d"   # where a Docker engine looks for registries' CAs
# The registries' CAs again, one file each, for programs that read digests from the registry
# themselves (the docker provider, in Go): `./bg` adds this folder to SSL_CERT_DIR.
REGISTRY_CA_DIR = "/etc/bluegreen/registry-cas"


def registry_ca_file(registry: str) -> str:
    """The registry's CA in REGISTRY_CA_DIR (a file name without the port's colon)."""
    return f"{REGISTRY_CA_DIR}/{registry.replace(':', '_')}.crt"


def registry_trust_dir(registry: str) -> str:
    """Where a Docker engine looks for the CA of the registry at `registry` (host:port)."""
    return f"{DOCKER_CERTS_DIR}/{registry}"


def service_network(environment: str, service: str) -> str:
    """The name of a service's private network on each host (where its dependencies answer)."""
    return docker_name(environment, service)


def service_component_name(environment: str, service: str) -> str:
    """The Pulumi name of a Service component; every resource of it starts with this and '-'."""
    return f"{environment}-{service}"


def slot_image_name(environment: str, service: str, colour: str, host: str) -> str:
    """The Pulumi name of the pull of a colour's image on one host (what preview reports)."""
    return f"{service_component_name(environment, service)}-{colour}-{host}-image"


def owning_service(environment: str, services: Iterable[str],
                   resource_name: str) -> tuple[str, str] | None:
    """(service, rest of the name) for a resource of one of `services`, or None; the longest
    service name wins where names share a prefix."""
    owner = max((s for s in services
                 if resource_name.startswith(service_component_name(environment, s) + "-")),
                key=len, default=None)
    if owner is None:
        return None
    return owner, resource_name[len(service_component_name(environment, owner)) + 1:]


def instance_id(environment: str, service: str, colour: str, host: str, index: int) -> str:
    """The Consul service ID (and container name suffix) of one instance."""
    return f"{environment}-{service}-{colour}-{host}-{index}"


def platform_instance(container_name: str, labels: dict[str, Any]) -> str | None:
    """The instance a running container is, if the platform made it (None otherwise): the
    registrator acts on this alone. An image's LABEL can set any `bluegreen.*` label, but not the
    container's name, which the platform gives as docker_name(instance), nor its role, which the
    platform sets on every container it runs (an isolation probe's is `probe`)."""
    instance = labels.get("bluegreen.instance") or ""
    if not instance or labels.get("bluegreen.role") != "service":
        return None
    return instance if container_name.lstrip("/") == docker_name(instance) else None


def registration_payload(*, instance: str, service: str, environment: str, colour: str,
                         address: str, port: int, health_path: str, interval_s: float,
                         timeout_s: float, version: str, image: str, host: str) -> dict[str, Any]:
    """The body of PUT /v1/agent/service/register for one container on its host's agent."""
    return {
        "ID": instance,
        "Name": service,
        "Tags": [environment, colour],
        "Address": address,
        "Port": port,
        "Meta": {
            "environment": environment,
            "colour": colour,
            "version": version,
            "image": image,
            "host": host,
        },
        "Check": {
            "CheckID": f"{instance}-http",
            "Name": f"HTTP GET {health_path} on {instance}",
            "HTTP": f"http://{address}:{port}{health_path}",
            "Interval": _go_duration(interval_s),
            "Timeout": _go_duration(timeout_s),
            # Start critical: a re-registration (a replaced container at a new port) must not
            # inherit the old container's passing status, or a gate could pass on it.
            "Status": "critical",
            # A replaced container's old registration must not linger as critical forever.
            "DeregisterCriticalServiceAfter": "10m",
        },
    }


def _go_duration(seconds: float) -> str:
    return f"{int(round(seconds * 1000))}ms"


def digest_reference(repository: str, digest: str) -> str:
    """repository@sha256:..., the only form service containers run."""
    reference = f"{repository}@{digest}"
    if not DIGEST_REF.match(reference):
        raise ValueError(f"not a digest reference: {reference!r}")
    return reference


def context_digest(directory: str, ignore: Iterable[str] = (".git", "__pycache__"),
                   exclude_files: Iterable[str] = ()) -> str:
    """A content hash of a build context: a rebuild happens when (and only when) it changes.

    `exclude_files` (absolute paths) are left out: the service manifest sits in its repo's
    context, but a change to its config block is not a change to the image."""
    ignored = set(ignore)
    excluded = {os.path.abspath(f) for f in exclude_files}
    digest = hashlib.sha256()
    for base, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in ignored)
        for name in sorted(files):
            path = os.path.join(base, name)
            if os.path.abspath(path) in excluded or not _regular_file(path):
                continue
            digest.update(os.path.relpath(path, directory).encode())
            digest.update(b"\0")
            with open(path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def _regular_file(path: str) -> bool:
    """Whether `path` is (or links to) a regular file: reading a FIFO would wait for a writer
    forever, a device may never end, and Docker sends neither's content as a file anyway."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # a dangling symlink
        return False


def catalogue_entry(manifest: Any, environment: str, settings: Any, images: dict[str, str],
                    call_routes: dict[str, str] | None = None) -> dict[str, Any]:
    """A service's row in the catalogue (Consul adds the live colour and instance health); each
    callee at the route its callers are given (`call_routes`, callee -> route; default its name).
    `manifest` and `settings` are a Manifest and a ServiceConfig, or objects with their fields
    (this module imports nothing of the project)."""
    rollout = getattr(settings, "rollout", None)
    return {
        "service": manifest.name,
        "environment": environment,
        "description": manifest.description,
        "stableUri": stable_path(environment, manifest.route),
        "previewUri": preview_path(environment, manifest.route),
        "hosts": list(settings.hosts),
        "calls": [{"service": callee,
                   "stableUri": stable_path(environment, (call_routes or {}).get(callee, callee))}
                  for callee in manifest.calls],
        "colours": {colour: {"version": slot.version, "image": images[colour],
                             "digest": images[colour].rsplit("@", 1)[-1]}
                    for colour, slot in sorted(settings.colours.items())},
        # How a flip goes live: through a rollout's steps (model.rollout), or at once (None).
        "rollout": {"steps": list(rollout.steps), "stepS": rollout.step_s} if rollout else None,
    }


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)


def bake_record(*, colour: str, previous: str, version: str, previous_version: str | None,
                since: datetime.datetime, bake_s: float, max_error_rate: float,
                traffic: dict[str, Any] | None = None) -> dict[str, Any]:
    """The value of bake_key written with a flip of the alias from `previous` to `colour`: the
    watchdog watches `colour` until `until` and flips back to `previous` on a breach. Every flip
    (pulumi up, rollback, promote) builds it here. `traffic`: {minSuccessRate, maxP99S, windowS}."""
    if colour not in COLOURS or previous not in COLOURS or colour == previous:
        raise ValueError(f"a bake record needs two different colours, got {colour!r} and {previous!r}")
    if bake_s <= 0:
        raise ValueError(f"bake time must be positive, got {bake_s}")
    if not 0 <= max_error_rate < 1:
        raise ValueError(f"max error rate must be in [0, 1), got {max_error_rate}")
    return {
        "colour": colour, "previous": previous, "version": version,
        "previousVersion": previous_version, "since": format_time(since),
        "until": format_time(since + datetime.timedelta(seconds=bake_s)),
        "maxErrorRate": max_error_rate, "status": "baking",
        # What real traffic must show (the watchdog judges by it where Prometheus runs).
        **({"traffic": traffic} if traffic else {}),
    }


def bake_outcome(record: dict[str, Any], status: str, now: datetime.datetime, reason: str = "") -> dict[str, Any]:
    """A bake record once the watchdog is done with it: `baked`, `rolled-back` (with why),
    `breached` (a breach it could not roll back) or `superseded` (the alias moved meanwhile)."""
    if status not in BAKE_STATUSES or status in ("baking", "rolling"):
        raise ValueError(f"not a final bake status: {status!r}")
    outcome = {**record, "status": status, "endedAt": format_time(now)}
    if reason:
        outcome["reason"] = reason
    return outcome


PACKAGE_NAME = "bluegreen"   # the component package (PulumiPlugin.yaml): resources bluegreen:index:<Name>


def package_type(resource: str) -> str:
    """The type token of one of the component package's resources, e.g. bluegreen:index:Service."""
    return f"{PACKAGE_NAME}:index:{resource}"
