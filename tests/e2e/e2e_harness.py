"""End-to-end harness: real `pulumi` (Automation API, file backend), real Docker, Consul and nginx.

Stacks are written as config files under stacks/ (as a user would), deployed, inspected through
the proxy and Consul on 127.0.0.1, and destroyed. Nothing here skips: a missing part fails."""

from __future__ import annotations

import contextlib
import html.parser
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

import requests
import urllib3
import yaml
from pulumi import automation as auto

from bluegreen.components.naming import docker_name
from bluegreen.delivery import recovery

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOG_DIR = os.path.join(REPO, "reports", "e2e")


def require_environment() -> None:
    """Fails (never skips) with what to run when a real part is missing."""
    problems = []
    for tool in ("pulumi", "pulumi-language-python", "consul", "docker"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not on PATH")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        problems.append("the Docker engine does not answer")
    for image in ("bluegreen/consul:", "bluegreen/proxy:", "bluegreen/registry:",
                  "bluegreen/prometheus:"):
        listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                                capture_output=True, text=True).stdout
        if image not in listed:
            problems.append(f"platform image {image}* is missing")
    if not os.environ.get("PULUMI_BACKEND_URL", "").startswith("file://"):
        problems.append("PULUMI_BACKEND_URL is not a file:// backend")
    if problems:
        raise RuntimeError("end-to-end tests need the real toolchain: " + "; ".join(problems)
                           + ". Run them through `./bg test`, which sets everything up.")


HOST2_DOCKER = "unix:///var/run/bluegreen-host2.sock"   # the bootstrap's second engine


def host_entries(ports: dict, second_host: bool = False) -> dict:
    """bluegreen:hosts for this machine's engine, and the second engine when asked."""
    hosts = {
        "local": {
            "docker": os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
            "consul": f"http://127.0.0.1:{ports['consul']}",
            "address": "127.0.0.1",
            "bridgeAddress": "172.17.0.1",
            "consulSerfPort": ports["serf"],
            "consulServerPort": ports["server"],
        }
    }
    if second_host:
        hosts["host2"] = {
            "docker": HOST2_DOCKER,
            "consul": f"http://127.0.0.1:{ports['host2_consul']}",
            "address": "127.0.0.1",
            "bridgeAddress": "172.31.250.1",
            "consulSerfPort": ports["host2_serf"],
            "consulServerPort": ports["host2_server"],
        }
    return hosts


def platform_config(ports: dict, environment: str, second_host: bool = False,
                    environments: tuple[str, ...] = ()) -> dict:
    """A stack that owns a platform on this machine's Docker engine, on the given ports; other
    stacks deploy `environments` on it (each with its own deployer token)."""
    config = {
        "bluegreen:environment": environment,
        "bluegreen:baseImage": os.environ.get("BLUEGREEN_BASE_IMAGE", "bluegreen/base:bookworm"),
        "bluegreen:hosts": host_entries(ports, second_host),
        "bluegreen:platform": {
            "host": "local",
            "consul": {"image": _image("bluegreen/consul")},
            "registry": {"image": _image("bluegreen/registry"), "port": ports["registry"]},
            "proxy": {"image": _image("bluegreen/proxy"), "port": ports["proxy"]},
        },
    }
    if second_host:
        config["bluegreen:platform"]["agents"] = ["host2"]
    if environments:
        config["bluegreen:platform"]["environments"] = list(environments)
    return config


def _image(repository: str) -> str:
    """The platform image the embedded `local` stack names (the tag the bootstrap builds), never
    merely the newest tag on the engine: other checkouts on the same engine build other tags."""
    with open(os.path.join(REPO, "stacks", "Pulumi.local.yaml"), encoding="utf-8") as handle:
        platform = yaml.safe_load(handle)["config"]["bluegreen:platform"]
    named = [part["image"] for part in platform.values()
             if isinstance(part, dict) and part.get("image", "").startswith(f"{repository}:")]
    if not named:
        raise RuntimeError(f"stacks/Pulumi.local.yaml names no {repository} image under "
                           "bluegreen:platform; name one (e.g. proxy: {image: ...})")
    listed = subprocess.run(["docker", "image", "inspect", named[0]], capture_output=True)
    if listed.returncode != 0:
        raise RuntimeError(f"image {named[0]} (stacks/Pulumi.local.yaml) is missing: run ./bg setup")
    return named[0]


def stack_config_dir(project: str) -> str:
    """Where a Pulumi project keeps its stack files (its Pulumi.yaml's stackConfigDir)."""
    with open(os.path.join(project, "Pulumi.yaml"), encoding="utf-8") as handle:
        return (yaml.safe_load(handle) or {}).get("stackConfigDir") or ""


class Deployment:
    """One stack of this project, driven through the Automation API. `secrets` ({path: value},
    e.g. `bluegreen:platformSecrets.registryPassword`) are set encrypted, as
    `pulumi config set --secret --path` would."""

    def __init__(self, name: str, config: dict, secrets: dict | None = None, project: str = REPO):
        self.name = name
        self.config = config
        self.secrets = dict(secrets or {})
        self.project = project   # the Pulumi project's directory (another one: examples/)
        self.path = os.path.join(project, stack_config_dir(project), f"Pulumi.{name}.yaml")
        os.makedirs(LOG_DIR, exist_ok=True)
        self.log = os.path.join(LOG_DIR, f"{name}.log")
        self.stack = None
        self.write_config()
        self.stack = auto.create_or_select_stack(stack_name=name, work_dir=project)
        self._set_secrets()

    def write_config(self) -> None:
        # Keep what pulumi wrote beside the config (the secrets' encryption salt).
        kept = {}
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as handle:
                kept = {k: v for k, v in (yaml.safe_load(handle) or {}).items() if k != "config"}
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write("# Written by the end-to-end tests.\n")
            yaml.safe_dump({"config": self.config, **kept}, handle, sort_keys=False)
        self._set_secrets()

    def _set_secrets(self) -> None:
        if self.stack is not None and self.secrets:
            self.stack.set_all_config({path: auto.ConfigValue(value=value, secret=True)
                                       for path, value in self.secrets.items()}, path=True)

    def outputs(self) -> dict:
        return {k: v.value for k, v in self.stack.outputs().items()}

    def deployer_token(self, environment: str | None = None) -> str:
        """A deployer's Consul token from this (platform) stack's `credentials` output: the one
        of `environment`, else of the stack's own environment (read once: they never change)."""
        if not getattr(self, "_deployer_tokens", None):
            self._deployer_tokens = self.outputs()["credentials"]["consulDeployerTokens"]
        return one_deployer_token(self._deployer_tokens,
                                  environment or self.config.get("bluegreen:environment") or None)

    def secret_values(self) -> dict[str, str]:
        """Every generated secret and ACL token of this stack in plain text (resource name ->
        value), from `pulumi stack export --show-secrets`: what must appear nowhere else."""
        exported = subprocess.run(["pulumi", "stack", "export", "--show-secrets", "--stack", self.name],
                                  cwd=REPO, capture_output=True, text=True, check=True).stdout
        values = {}
        for resource in json.loads(exported)["deployment"].get("resources") or []:
            field = {"GeneratedSecret": "value", "AclToken": "secret_id"}.get(
                resource["type"].rsplit(":", 1)[-1])
            value = (resource.get("outputs") or {}).get(field) if field else None
            if isinstance(value, dict) and "plaintext" in value:
                value = json.loads(value["plaintext"])
            if isinstance(value, str) and value:
                values[resource["urn"].rsplit("::", 1)[-1]] = value
        return values

    def management_token(self) -> str:
        """Consul's management token of this (platform) stack, as generated: for tests that ask
        the operator endpoints (raft, autopilot), which no actor's token may."""
        return self.secret_values()[f"{self.name}-credentials-consul-management"]

    def update_config(self, mutate) -> None:
        mutate(self.config)
        self.write_config()

    def _printer(self, label: str):
        # Line-buffered: a drill watches the log to act at a given point of the update.
        handle = open(self.log, "a", encoding="utf-8", buffering=1)
        handle.write(f"\n===== {label} {time.strftime('%H:%M:%S')}\n")
        return handle

    def up(self) -> dict:
        with self._printer("up") as out:
            try:
                result = self.stack.up(on_output=lambda line: out.write(line + "\n"), color="never")
            except auto.CommandError as error:
                error.add_note(self.platform_logs(out))
                raise
        return {k: v.value for k, v in result.outputs.items()}

    def platform_logs(self, out, lines: int = 40) -> str:
        """The tail of this stack's proxy and Consul agent logs (on the local engine), written to
        the stack's log and returned: what a failed update's message alone cannot explain."""
        tails = []
        for parts in (("proxy",), ("consul", "local")):
            container = docker_name(self.name, *parts)
            logs = subprocess.run(["docker", "logs", "--timestamps", "--tail", str(lines), container],
                                  capture_output=True, text=True, check=False)
            tails.append(f"----- docker logs {container} (last {lines} lines)\n"
                         f"{logs.stdout}{logs.stderr}")
        text = "\n".join(tails)
        out.write(text)
        return text

    def preview(self, **kwargs) -> auto.PreviewResult:
        with self._printer("preview") as out:
            return self.stack.preview(on_output=lambda line: out.write(line + "\n"), color="never",
                                      **kwargs)

    def destroy(self) -> None:
        with self._printer("destroy") as out:
            self.stack.destroy(on_output=lambda line: out.write(line + "\n"), color="never")

    def remove(self) -> None:
        """Destroys what is left and forgets the stack and its config file (first clearing what
        an update killed by a failed test left, as `./bg destroy` would)."""
        try:
            recovery.recover(self.name, self.project, recovery.backend_directory())
            self.destroy()
        finally:
            self.stack.workspace.remove_stack(self.name)
            if os.path.exists(self.path):
                os.remove(self.path)


def time_bound(seconds: int) -> None:
    """Raises TimeoutError in the main thread once `seconds` have passed (signal.alarm(0) ends
    the bound): a benchmark's whole run stays bounded."""
    def out_of_time(*_):
        raise TimeoutError(f"the run ran out of its {seconds}s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(seconds)


def state_locks(stack: str) -> list[str]:
    """The stack's lock files in the state backend (what a killed update leaves)."""
    return recovery.lock_files(recovery.backend_directory(), stack)


def write_figures(name: str, figures: dict) -> None:
    """Measured figures of an end-to-end module, as reports/e2e/<name>-figures.json."""
    os.makedirs(LOG_DIR, exist_ok=True)
    with open(os.path.join(LOG_DIR, f"{name}-figures.json"), "w", encoding="utf-8") as handle:
        json.dump(figures, handle, indent=2)


def allow_registry(stack: str, registry: str) -> None:
    """The stack's own policy config (stacks/policy.<stack>.json, which ./bg and the delivery
    commands hand to the policy pack) listing `registry` (host:port) for the image rules: what a
    site whose platform registry is not on a loopback address writes, as the lab's stacks do."""
    rules = ("service-image-pinned", "dependency-image-registry")
    with open(os.path.join(REPO, "stacks", f"policy.{stack}.json"), "w", encoding="utf-8") as handle:
        json.dump({rule: {"registries": [registry]} for rule in rules}, handle, indent=2)


def write_report(path: str, figures: dict) -> None:
    """A benchmark's figures as JSON at `path` (under reports/), and where they are."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(figures, handle, indent=2)
    print(f"figures: {os.path.relpath(path, REPO)}")


@contextlib.contextmanager
def deployed(name: str, config: dict, figures: dict | None = None, figures_name: str = "",
             secrets: dict | None = None, project: str = REPO):
    """A stack for a module's tests (with `secrets` set as secret config paths) of the project
    in `project`: removed afterwards, and its figures written (if given)."""
    require_environment()
    deployment = Deployment(name, config, secrets=secrets, project=project)
    try:
        yield deployment
    finally:
        deployment.remove()
        if figures is not None:
            write_figures(figures_name or name, figures)


def consul(token: str) -> requests.Session:
    """A session whose requests carry `token` (X-Consul-Token)."""
    session = requests.Session()
    session.headers["X-Consul-Token"] = token
    return session


_DEPLOYER_TOKENS: dict[str, str] = {}


def one_deployer_token(tokens: dict[str, str], environment: str | None) -> str:
    """`environment`'s token of a platform's `consulDeployerTokens`; without one, the only
    token there is (any deployer reads the records; only its own environment's it writes)."""
    if environment is not None:
        return tokens[environment]
    assert len(tokens) == 1, f"name the environment: the platform has deployers for {sorted(tokens)}"
    return next(iter(tokens.values()))


def deployer_consul(stack: str) -> requests.Session:
    """Consul with the deployer's token of the stack that owns its platform and deploys one
    environment on it (read once)."""
    if stack not in _DEPLOYER_TOKENS:
        outputs = auto.select_stack(stack_name=stack, work_dir=REPO).outputs()
        _DEPLOYER_TOKENS[stack] = one_deployer_token(
            outputs["credentials"].value["consulDeployerTokens"], None)
    return consul(_DEPLOYER_TOKENS[stack])


def get_json(url: str, timeout: float = 3.0) -> dict:
    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    return response.json()


def wait_until(predicate, timeout_s: float, interval_s: float = 0.1, what: str = "condition"):
    """Polls `predicate` until it returns a truthy value; returns (value, seconds waited)."""
    start = time.monotonic()
    last_error = None
    while time.monotonic() - start < timeout_s:
        try:
            value = predicate()
            if value:
                return value, time.monotonic() - start
        except Exception as error:  # noqa: BLE001 - retried until the deadline
            last_error = error
        time.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s}s (last error: {last_error})")


class InBackground:
    """A context manager that runs `self._run()` in a daemon thread while its block runs; `_run`
    ends once `self._stop` is set, and the exit waits up to `join_timeout_s` for it."""

    join_timeout_s = 5

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join(timeout=self.join_timeout_s)

    def _run(self):
        raise NotImplementedError


@dataclass
class RequestLoop(InBackground):
    """A bounded client loop (about `rate` requests/s, at most `max_requests` and `max_seconds`)
    that records every response's status and serving colour. Without keep_alive each request is
    a new client (no connection, no cookie kept), so a split buckets each one afresh; with it, one
    client that keeps its connection and cookies, as a browser does."""

    join_timeout_s = 10

    url: str
    rate: float = 20.0
    max_requests: int = 3000
    max_seconds: float = 240.0
    keep_alive: bool = False
    retries: int = 1               # a keep-alive client's retries of a GET whose connection closed
    results: list = field(default_factory=list)

    def _run(self):
        # Without keep_alive, a fresh connection per request. With it, one session: a graceful
        # nginx reload finishes in-flight requests but closes idle keep-alive connections, which a
        # keep-alive client retries once on a new connection (as browsers do for a GET); with
        # retries=0 it counts such a request as failed.
        session = requests.Session()
        if self.keep_alive and self.retries:
            retry = urllib3.Retry(total=self.retries, connect=self.retries, read=self.retries,
                                  status=0, allowed_methods={"GET"})
            session.mount("http://", requests.adapters.HTTPAdapter(max_retries=retry))
        headers = {} if self.keep_alive else {"Connection": "close"}
        start = time.monotonic()
        while not self._stop.is_set() and len(self.results) < self.max_requests \
                and time.monotonic() - start < self.max_seconds:
            sent = time.monotonic()
            if not self.keep_alive:
                session.cookies.clear()   # a new client each time: a split's cookie is not kept
            try:
                response = session.get(self.url, timeout=5, headers=headers)
                colour = response.headers.get("X-Service-Colour", "")
                self.results.append((sent, response.status_code, colour,
                                     response.headers.get("X-Service-Version", "")))
            except requests.RequestException as error:
                self.results.append((sent, 0, "", type(error).__name__))
            time.sleep(max(0.0, 1.0 / self.rate - (time.monotonic() - sent)))

    @property
    def failures(self) -> list:
        return [r for r in self.results if r[1] != 200]


def container_processes(container: str, name: str) -> list[int]:
    """Host PIDs of the processes called `name` (their comm) in a container of this machine's
    engine: what a test kills or stops to play a crash."""
    init = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", container],
                          capture_output=True, text=True, check=True).stdout.strip()
    namespace = os.readlink(f"/proc/{init}/ns/pid")
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/comm", encoding="utf-8") as handle:
                if handle.read().strip() == name and os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                    found.append(int(entry))
        except OSError:
            continue   # ended meanwhile
    return found


def docker_json(*args: str) -> list | dict:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def docker_names(kind: str, name_filter: str, host: str | None = None) -> list[str]:
    """Names of containers/networks/volumes whose name contains `name_filter` (on `host`)."""
    command = {"container": ["ps", "-a"], "network": ["network", "ls"], "volume": ["volume", "ls"]}[kind]
    fmt = "{{.Name}}" if kind == "volume" else "{{.Names}}" if kind == "container" else "{{.Name}}"
    out = subprocess.run(["docker", *(["-H", host] if host else []), *command,
                          "--filter", f"name={name_filter}", "--format", fmt],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.split() if line]


def container_identity(name: str) -> tuple[str, str]:
    """(container id, start time): both unchanged means the container was not restarted."""
    info = docker_json("inspect", name)[0]
    return info["Id"], info["State"]["StartedAt"]


TINY_SERVER = '''\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDENTITY = {k: os.environ.get("SERVICE_" + k.upper(), "") for k in ("name", "version", "colour", "environment")}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(IDENTITY).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Service-Version", IDENTITY["version"])
        self.send_header("X-Service-Colour", IDENTITY["colour"])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("", 8000), Handler).serve_forever()
'''


def tiny_service(directory: str, name: str) -> str:
    """A small service repo without dependencies (a JSON identity on every path); returns the
    path of its service.yaml."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "server.py"), "w", encoding="utf-8") as handle:
        handle.write(TINY_SERVER)
    with open(os.path.join(directory, "Dockerfile"), "w", encoding="utf-8") as handle:
        handle.write("ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\nCOPY server.py /server.py\n"
                     "USER nobody\nCMD [\"python3\", \"-u\", \"/server.py\"]\n")
    manifest = os.path.join(directory, "service.yaml")
    with open(manifest, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"name": name, "description": f"{name}: a small service without dependencies",
                        "build": {"context": "."}, "port": 8000,
                        "health": {"path": "/health", "interval": "1s", "timeout": "1s"},
                        "route": name, "memory": "48m"}, handle, sort_keys=False)
    return manifest


def push_tiny_image(directory: str, registry: str, name: str = "tiny") -> str:
    """Builds the tiny service's image once and pushes it; returns its digest reference."""
    tiny_service(directory, name)
    tag = f"{registry}/{name}:1"
    base = os.environ.get("BLUEGREEN_BASE_IMAGE", "bluegreen/base:bookworm")
    subprocess.run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, directory],
                   check=True, capture_output=True)
    subprocess.run(["docker", "push", "-q", tag], check=True, capture_output=True)
    digests = docker_json("image", "inspect", tag)[0]["RepoDigests"]
    return next(d for d in digests if d.startswith(f"{registry}/{name}@"))


# --- the lab: hosts in network namespaces, reached over ssh:// (lab/lab.sh) --------------------

LAB_SCRIPT = os.path.join(REPO, "lab", "lab.sh")


def lab(*args: str, timeout: float = 180) -> str:
    """Runs lab/lab.sh (up, status, stop-host N, link-down N, ...); fails loudly."""
    result = subprocess.run(["bash", LAB_SCRIPT, *args], capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"lab/lab.sh {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def lab_hosts(ports: dict) -> dict:
    """bluegreen:hosts for every lab host (the lab must be up: `./bg lab up`), their agents on
    the given ports."""
    hosts = json.loads(lab("hosts"))
    for name, host in hosts.items():
        status = subprocess.run(["docker", "-H", f"unix://{host['dockerSocket']}", "info"],
                                capture_output=True)
        if status.returncode != 0:
            raise RuntimeError(f"lab host {name} does not answer: run `./bg lab up`")
        host.update({"consul": f"http://{host['address']}:{ports['consul']}",
                     "consulSerfPort": ports["serf"], "consulServerPort": ports["server"]})
    return hosts


def lab_platform_config(ports: dict, hosts: dict, environments: tuple[str, ...],
                        proxies: tuple[str, ...] = (), virtual_address: str | None = None,
                        watchdogs: tuple[str, ...] = ()) -> dict:
    """A platform wholly on the lab: a Consul server on every host; the registry and the proxy on
    the first, at its lab address (so nothing runs on this machine's shared engine), for stacks
    of `environments`. With `proxies` (lab hosts) a proxy on each of them instead, behind
    `virtual_address`; with `watchdogs`, the bake watchdogs' hosts."""
    home = next(iter(hosts))
    config = {
        "bluegreen:hosts": hosts,
        "bluegreen:platform": {
            "host": home,
            "servers": list(hosts),
            "consul": {"image": _image("bluegreen/consul")},
            "registry": {"image": _image("bluegreen/registry"), "port": ports["registry"]},
            "proxy": {"image": _image("bluegreen/proxy"), "port": ports["proxy"],
                      "address": hosts[home]["address"],
                      # This machine deploys: its flip proof and preview gate ask on /preview/
                      # (lab/lab.env: .1 of the lab network is this machine).
                      "previewFrom": [hosts[home]["address"].rsplit(".", 1)[0] + ".1/32"]},
            "environments": list(environments),
        },
    }
    if proxies:
        proxy = config["bluegreen:platform"]["proxy"]
        del proxy["address"]
        proxy.update(hosts=list(proxies), virtualAddress=virtual_address)
    if watchdogs:
        config["bluegreen:platform"]["watchdogHosts"] = list(watchdogs)
    return config


def host_docker(host: dict, *args: str, check: bool = True) -> str:
    """The docker CLI against a lab host's engine on its socket (no ssh: works with its link down)."""
    result = subprocess.run(["docker", "-H", f"unix://{host['dockerSocket']}", *args],
                            capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} on {host['address']}: {result.stderr.strip()}")
    return result.stdout.strip()


class RowReader(html.parser.HTMLParser):
    """Collects the cells (by data-field) of table rows keyed by (environment, service)."""

    def __init__(self):
        super().__init__()
        self.rows, self._row, self._field = {}, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-service" in attrs:
            self._row = self.rows.setdefault((attrs["data-environment"], attrs["data-service"]), {})
        elif tag == "td" and self._row is not None:
            self._field = attrs.get("data-field")
            self._row[self._field] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._field = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row is not None and self._field:
            self._row[self._field] += data


def catalogue_page_rows(proxy: str) -> dict:
    """The catalogue page as served (the table is in the HTML; no script needs to run), its
    cells by (environment, service) and data-field."""
    response = requests.get(f"{proxy}/catalogue/", timeout=5)
    response.raise_for_status()
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    reader = RowReader()
    reader.feed(response.text)
    return reader.rows


class ServiceRepo:
    """A copy of services/vizconfig whose server code a test edits: `stamp` is a field of every
    response, so what a container answers tells which sources its image was built from."""

    def __init__(self, prefix: str = "bluegreen-repo-"):
        self.root = tempfile.mkdtemp(prefix=prefix)
        shutil.copytree(os.path.join(REPO, "services", "vizconfig"), self.root, dirs_exist_ok=True)
        self.server = os.path.join(self.root, "app", "server.py")
        with open(self.server, encoding="utf-8") as handle:
            self.original = handle.read()
        self.manifest = os.path.join(self.root, "service.yaml")

    def edit(self, stamp: str, healthy: bool = True, fail_root: bool = False,
             fail_every: int = 0) -> None:
        """`stamp` in every answer; unhealthy: /health fails (the gate does); fail_root: GET /
        answers 500 while /health stays 200 (it passes its gate and fails its users); fail_every
        N: every Nth GET / of its users answers 500, while the watchdog's probes (its User-Agent)
        all pass: a release failing part of its real requests in a way synthetic probes miss, so
        that only its real traffic can judge it (a count shared with the probes could make them
        land on the failing turns, the two loops being periodic, and judge it first)."""
        code = self.original.replace("IDENTITY = {\n", f'IDENTITY = {{\n    "stamp": "{stamp}",\n', 1)
        if not healthy:
            code = code.replace("self.store.ping()", 'raise redis.RedisError("broken build")', 1)
        if fail_root:
            code = code.replace('return self._send(200, {**IDENTITY, "config": self.config.get()})',
                                'return self._send(500, {"error": "broken release", **IDENTITY})', 1)
        if fail_every:
            code = code.replace('return self._send(200, {**IDENTITY, "config": self.config.get()})',
                                'if (self.headers.get("User-Agent") != "bluegreen-watchdog"\n'
                                f'                    and next(FAILS) % {fail_every} == 0):\n'
                                f'                return self._send(500, {{"error": "flaky release", **IDENTITY}})\n'
                                '            return self._send(200, {**IDENTITY, "config": self.config.get()})', 1)
            code = code.replace("import base64\n", "import base64\nimport itertools\n", 1)
            code = code.replace("IDENTITY = {\n", "FAILS = itertools.count(1)\nIDENTITY = {\n", 1)
        assert f'"stamp": "{stamp}"' in code and (not fail_root or "broken release" in code)
        assert not fail_every or "flaky release" in code
        with open(self.server, "w", encoding="utf-8") as handle:
            handle.write(code)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_dom(url: str, budget_ms: int = 5000) -> str:
    """The page at `url` as headless Chromium leaves it after `budget_ms` of (virtual) time: its
    scripts have run (virtual time waits for their fetches)."""
    return _chromium(url, budget_ms, "--dump-dom").stdout


def chromium_screenshot(url: str, path: str, size: str = "1280,1400", budget_ms: int = 5000) -> None:
    """A PNG of the page at `url` (window `size`, width,height) once its scripts have run."""
    _chromium(url, budget_ms, f"--screenshot={path}", f"--window-size={size}", "--hide-scrollbars")
    assert os.path.getsize(path) > 0, f"chromium wrote no screenshot to {path}"


def _chromium(url: str, budget_ms: int, *flags: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="bluegreen-chromium-")
    try:
        return subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                               *flags, url], capture_output=True, text=True, timeout=60, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
