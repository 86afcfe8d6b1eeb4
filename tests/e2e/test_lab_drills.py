"""Failure drills on the lab (hosts in network namespaces, engines over ssh://, a Consul server on
each): every drill runs under a bounded client loop through the proxy and records the failed
requests, the time to detect and the time to converge (reports/e2e/lab-figures.json).

Everything runs on the lab's own engines: the registry on the first host, at its lab address, and
a proxy on each service host behind one virtual address (VRRP), which the clients use. The service
runs on every lab host but the last, which holds only a Consul server: drill (a) stops that server
(made leader first) in the middle of a deploy; drills (b) and (e) take down the last service host.
Then a caller joins on every service host and reaches its callee through the virtual address from
each. Drills (g) and (h) lose the proxy that holds the address: its container killed during a
flip, then its host's link cut; fresh and keep-alive clients on the address. Drill (i) loses the
host of the acting bake watchdog during a bake: the standby on another host takes it over. Runs in
order on one stack."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import requests

from bluegreen.components.naming import (bake_key, docker_name, instance_id, proxy_container, vrrp_container,
                                         watchdog_lock_key)
from e2e_harness import (LOG_DIR, REPO, Deployment, RequestLoop, allow_registry, get_json,
                         host_docker, lab, lab_hosts, lab_platform_config, require_environment,
                         state_locks, wait_until)

PLATFORM = "e2e-lab-platform"
STACK = ENV = "e2e-lab"
PORTS = {"consul": 29500, "serf": 29301, "server": 29300, "registry": 29005, "proxy": 29080}
STABLE = ""  # the proxy on the first lab host: set once the lab answers
GATE_TIMEOUT_S = 20
# nginx's wait for a connection to an instance before it tries the next one (routes.conf.ctmpl).
CONNECT_TIMEOUT_S = float(re.search(r"proxy_connect_timeout (\d+)s;",
                                    open(os.path.join(REPO, "images/proxy/routes.conf.ctmpl"),
                                         encoding="utf-8").read()).group(1))
WARMUP_S = 4    # drill b's new instances answer 503 on /health for this long after they start
BLUE_3 = {"version": "3.0.0", "env": {"WARMUP_SECONDS": str(WARMUP_S)}}   # drill b's, kept after
FIGURES: dict = {}


class Lab:
    """The lab's hosts as the stacks see them, and what the drills need to know about them."""

    def __init__(self):
        self.hosts = lab_hosts(PORTS)
        self.lab_names = list(self.hosts)
        if len(self.lab_names) < 3:
            raise RuntimeError("the drills need a lab of at least 3 hosts (BLUEGREEN_LAB_HOSTS)")
        self.service_hosts = self.lab_names[:-1]
        self.server_only = self.lab_names[-1]
        self.proxy_host = self.lab_names[0]     # the registry's, and the first proxy's
        self.proxy_hosts = self.service_hosts
        self.virtual_address = self.hosts[self.proxy_host]["address"].rsplit(".", 1)[0] + ".120"
        # The platform host's watchdog (number 1) and one on the server-only host (number 2).
        self.watchdog_hosts = (self.proxy_host, self.server_only)
        # Questions about the cluster go to the proxy's host's agent (never stopped but in (d)).
        self.local_agent = self.hosts[self.proxy_host]["consul"]
        # Operator questions need the management token: set once the platform stack made it.
        self.consul = requests.Session()

    def number(self, name: str) -> str:
        return name.removeprefix("lab")

    def agent(self, name: str) -> str:
        return self.hosts[name]["consul"]

    def leader(self) -> str:
        """The lab host whose server leads (asked through this machine's client agent)."""
        address = self.consul.get(f"{self.local_agent}/v1/status/leader", timeout=3).json()
        return next(n for n in self.lab_names if address.startswith(self.hosts[n]["address"] + ":"))

    def voters_alive(self) -> set[str]:
        """Servers that autopilot counts as healthy voters (alive, in step with the leader)."""
        health = self.consul.get(f"{self.local_agent}/v1/operator/autopilot/health", timeout=3)
        if health.status_code != 200:
            return set()
        return {s["Name"] for s in health.json()["Servers"] if s["Healthy"] and s["Voter"]}

    def wait_healthy(self, timeout_s: float = 90) -> float:
        """Waits until every server is a healthy voter (the quorum tolerates a failure again)."""
        return wait_until(lambda: self.voters_alive() == set(self.lab_names), timeout_s,
                          interval_s=0.2, what="every Consul server a healthy voter")[1]

    def make_leader(self, name: str) -> None:
        """Moves the raft leadership to `name`'s server (losing the leader is the harder case)."""
        if self.leader() == name:
            return
        node_id = self.consul.get(f"{self.agent(name)}/v1/agent/self", timeout=3).json()["Config"]["NodeID"]
        moved = self.consul.post(f"{self.agent(name)}/v1/operator/raft/transfer-leader",
                                 params={"id": node_id}, timeout=10)
        assert moved.status_code == 200, f"transfer-leader to {name}: {moved.status_code} {moved.text}"
        wait_until(lambda: self.leader() == name, 15, what=f"{name} leads")

    def registration(self, host: str, colour: str) -> dict | None:
        instance = instance_id(ENV, "vizconfig", colour, host, 0)
        response = self.consul.get(f"{self.agent(host)}/v1/agent/service/{instance}", timeout=2)
        return response.json() if response.status_code == 200 else None

    def proxy_url(self, name: str) -> str:
        """The proxy on lab host `name`, at its own address (not the virtual one)."""
        return f"http://{self.hosts[name]['address']}:{PORTS['proxy']}"

    def address_holders(self) -> set[str]:
        """The proxy hosts whose interface holds the virtual address now (asked of the VRRP
        containers on the engines' sockets: this works with a host's link cut)."""
        return {n for n in self.proxy_hosts if f" {self.virtual_address}/" in host_docker(
            self.hosts[n], "exec", vrrp_container(PLATFORM, n), "ip", "-4", "-o", "addr", "show")}

    def hand_address_to(self, name: str) -> None:
        """Puts the virtual address on `name`'s proxy: the holder's keepalived restarts (it gives
        the address up on the way out, and comes back standby). Drills (b) and (e) take down a
        service host that also runs a proxy: they measure that host's loss, (g) and (h) the
        address holder's."""
        for other in self.address_holders() - {name}:
            host_docker(self.hosts[other], "restart", vrrp_container(PLATFORM, other))
        wait_until(lambda: self.address_holders() == {name}, 15, interval_s=0.1,
                   what=f"the virtual address on {name} alone")

    def live_upstream(self, colour: str) -> str:
        """The upstream of the drill's service and `colour` in the first proxy's applied config."""
        text = host_docker(self.hosts[self.proxy_host], "exec",
                           proxy_container(PLATFORM, self.proxy_host, True),
                           "cat", "/etc/nginx/live/upstreams.conf")
        start = text.index(f"upstream {ENV}--vizconfig--{colour} {{")
        return text[start:text.index("}", start)]


def service_settings(**overrides) -> dict:
    settings = {"manifest": "services/vizconfig/service.yaml", "live": "blue",
                "blue": {"version": "1.0.0"}, "gateTimeout": GATE_TIMEOUT_S}
    settings.update(overrides)
    return settings


@pytest.fixture(scope="module")
def drill():
    require_environment()
    lab("up")
    the_lab = Lab()
    global STABLE
    STABLE = f"http://{the_lab.virtual_address}:{PORTS['proxy']}/{ENV}/vizconfig/"
    platform = Deployment(PLATFORM, lab_platform_config(
        PORTS, the_lab.hosts, (ENV,), proxies=tuple(the_lab.proxy_hosts),
        virtual_address=the_lab.virtual_address, watchdogs=the_lab.watchdog_hosts))
    environment = None
    try:
        platform.up()
        the_lab.consul.headers["X-Consul-Token"] = platform.management_token()
        allow_registry(STACK, f"{the_lab.hosts[the_lab.proxy_host]['address']}:{PORTS['registry']}")
        environment = Deployment(STACK, {
            "bluegreen:environment": ENV,
            "bluegreen:platformStack": f"organization/bluegreen/{PLATFORM}",
            "bluegreen:buildHost": the_lab.lab_names[0],
            "bluegreen:baseImage": os.environ.get("BLUEGREEN_BASE_IMAGE", "bluegreen/base:bookworm"),
            "bluegreen:hosts": {n: the_lab.hosts[n] for n in the_lab.lab_names},
            "bluegreen:services": {"vizconfig": service_settings(hosts=the_lab.service_hosts)},
        })
        environment.up()
        yield the_lab, platform, environment
    finally:
        # A drill that failed half-way must not leave a host down for the clean-up (or others).
        for name in the_lab.lab_names:
            subprocess.run(["bash", os.path.join(REPO, "lab", "lab.sh"), "link-up",
                            the_lab.number(name)], capture_output=True)
        lab("up")
        try:
            the_lab.wait_healthy(120)
        except AssertionError:
            pass  # the clean-up below says what it could not reach
        try:
            if environment is not None:
                environment.remove()
        finally:
            platform.remove()
            os.makedirs(LOG_DIR, exist_ok=True)
            with open(os.path.join(LOG_DIR, "lab-figures.json"), "w") as handle:
                json.dump(FIGURES, handle, indent=2)


def set_service(environment: Deployment, lab_: Lab, **overrides) -> None:
    environment.update_config(lambda c: c["bluegreen:services"].__setitem__(
        "vizconfig", service_settings(hosts=lab_.service_hosts, **overrides)))


def served(url: str = "") -> tuple[str, str]:
    body = get_json(url or STABLE)
    return body["version"], body["colour"]


def loop() -> RequestLoop:
    return RequestLoop(STABLE, rate=10, max_requests=5000, max_seconds=420)


def record(drill_name: str, client: RequestLoop, **figures) -> None:
    FIGURES[drill_name] = {"requests": len(client.results), "failed_requests": len(client.failures),
                           **{k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}}


class Background:
    """`pulumi up` of a Deployment in a thread; `error` holds its failure."""

    def __init__(self, deployment: Deployment):
        self.error: Exception | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self._thread = threading.Thread(target=self._run, args=(deployment,), daemon=True)
        self._thread.start()

    def _run(self, deployment):
        try:
            deployment.up()
        except Exception as error:  # noqa: BLE001 - inspected by the test
            self.error = error
        finally:
            self.finished = time.monotonic()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"pulumi up still runs after {timeout}s"


def test_the_lab_serves_across_hosts_by_address(drill):
    the_lab, platform, _ = drill
    assert served() == ("1.0.0", "blue")
    the_lab.wait_healthy()
    catalog = the_lab.consul.get(f"{the_lab.local_agent}/v1/catalog/service/vizconfig", timeout=3).json()
    registered = {s["ServiceID"]: (s["ServiceAddress"], s["ServicePort"]) for s in catalog
                  if ENV in s["ServiceTags"]}
    assert len(registered) == len(the_lab.service_hosts)
    for name in the_lab.service_hosts:
        host = the_lab.hosts[name]
        address, port = registered[instance_id(ENV, "vizconfig", "blue", name, 0)]
        # Each host advertises its own lab address; the container is published exactly there.
        assert address == host["address"]
        ports = json.loads(host_docker(host, "inspect", "-f", "{{json .NetworkSettings.Ports}}",
                                       docker_name(instance_id(ENV, "vizconfig", "blue", name, 0))))
        assert [(b["HostIp"], int(b["HostPort"])) for b in next(iter(ports.values()))] == [(address, port)]
        # The proxy reaches it by address, and the host pulled it from the registry.
        assert f"server {address}:{port} " in the_lab.live_upstream("blue")
        pulled = host_docker(host, "images", "--digests", "--format", "{{.Repository}}")
        registry = the_lab.hosts[the_lab.proxy_host]["address"]
        assert f"{registry}:{PORTS['registry']}/vizconfig" in pulled.split()
    # ... over TLS: no engine may pull from a lab address without it, and the registry answers
    # only HTTPS, with a certificate the platform's CA signed.
    for name in the_lab.lab_names:
        insecure = host_docker(the_lab.hosts[name], "info", "--format",
                               "{{json .RegistryConfig.InsecureRegistryCIDRs}}")
        assert json.loads(insecure) == ["127.0.0.0/8"], (name, insecure)
    registry = f"{the_lab.hosts[the_lab.proxy_host]['address']}:{PORTS['registry']}"
    ca = os.path.join(LOG_DIR, "lab-registry-ca.crt")
    os.makedirs(LOG_DIR, exist_ok=True)
    with open(ca, "w", encoding="utf-8") as handle:
        handle.write(platform.outputs()["registryCa"])
    assert requests.get(f"https://{registry}/v2/", verify=ca, timeout=5).status_code == 401
    assert requests.get(f"http://{registry}/v2/", timeout=5).status_code == 400   # plain HTTP
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{registry}/v2/", timeout=5)    # not a CA anyone else trusts
    # Clients use one address; the catalogue lists the proxies behind it.
    catalogue = get_json(f"http://{the_lab.virtual_address}:{PORTS['proxy']}/catalogue.json")
    assert catalogue["proxies"] == {"virtualAddress": the_lab.virtual_address, "proxies": [
        {"host": n, "url": the_lab.proxy_url(n)} for n in the_lab.proxy_hosts]}
    assert len(the_lab.address_holders()) == 1
    # The certificate is made once and the exited trust containers are kept: a re-run of the
    # platform changes nothing.
    changes = platform.preview().change_summary
    assert not {"create", "update", "replace", "delete"} & {op for op, n in changes.items() if n}, changes


def test_drill_a_a_consul_server_stopped_during_a_deploy(drill):
    the_lab, _, environment = drill
    victim = the_lab.server_only
    victim_host = the_lab.hosts[victim]
    the_lab.wait_healthy()
    # Stopping the leader is the harder case: the cluster must elect another mid-deploy.
    the_lab.make_leader(victim)
    set_service(environment, the_lab, live="green", green={"version": "2.0.0"})
    server = docker_name(PLATFORM, "consul", victim)
    with loop() as client:
        deploy = Background(environment)
        time.sleep(2)
        stopped = time.monotonic()
        host_docker(victim_host, "stop", server)
        try:
            _, elected = wait_until(lambda: the_lab.leader() != victim, 30, interval_s=0.2,
                                    what="a new leader")
            _, detected = wait_until(lambda: victim not in the_lab.voters_alive(), 60,
                                     interval_s=0.2, what=f"{victim} seen as failed")
            deploy.join(300)
        finally:
            deploy.join(300)
            host_docker(victim_host, "start", server)
            restarted = time.monotonic()
        assert deploy.error is None, deploy.error
        assert served() == ("2.0.0", "green")
        deploy_s = deploy.finished - deploy.started
        rejoined = the_lab.wait_healthy()
    assert stopped - deploy.started < deploy_s, "the server was stopped after the deploy ended"
    assert client.failures == [], (f"stopped at +{stopped - deploy.started:.2f}s, deploy ended at "
                                   f"+{deploy_s:.2f}s; failures at " +
                                   str([round(f[0] - deploy.started, 2) for f in client.failures]))
    record("a_consul_server_stopped", client, stopped_server=victim, leader_elected_s=elected,
           detect_s=detected, deploy_s=deploy_s, rejoined_after_start_s=rejoined,
           converged_s=restarted + rejoined - stopped)


def test_drill_b_a_host_link_down_during_a_deploy_to_it(drill):
    the_lab, _, environment = drill
    victim = the_lab.service_hosts[-1]
    others = [n for n in the_lab.lab_names if n != victim]
    the_lab.wait_healthy()
    the_lab.hand_address_to(the_lab.proxy_host)
    live_before = {n: container_identity_on(the_lab, n, "green") for n in the_lab.service_hosts}
    deps_before = {n: host_docker(the_lab.hosts[n], "ps", "-q", "--filter", "label=bluegreen.role=dependency")
                   for n in others if n in the_lab.service_hosts}
    # The victim's server leads: the others must elect a leader while the gate asks them.
    the_lab.make_leader(victim)
    # The new instances warm up for a few seconds (503 on /health): the gate is sure to be
    # waiting on them when the cable is cut, whatever the scheduling of the update.
    set_service(environment, the_lab, live="blue", blue=BLUE_3, green={"version": "2.0.0"})
    victim_instance = instance_id(ENV, "vizconfig", "blue", victim, 0)
    logged = os.path.getsize(environment.log) if os.path.exists(environment.log) else 0
    with loop() as client:
        deploy = Background(environment)
        # Cut the cable once the victim's new instance is registered (its registration resource
        # done): the gate must name that instance and fail within its timeout.
        wait_until(lambda: logged_done(environment.log, logged, f"{victim_instance}-registration"),
                   240, interval_s=0.05, what=f"{victim_instance} registered")
        with link_down(the_lab, victim) as cut:
            deploy.join(GATE_TIMEOUT_S + 120)
            detected = deploy.finished - cut
            message = str(deploy.error)
            assert deploy.error is not None, "the deploy passed its gate with a host unreachable"
            assert served()[1] == "green"
            time.sleep(3)  # traffic keeps flowing on the live colour with the host gone
            live_during = {n: container_identity_on(the_lab, n, "green") for n in the_lab.service_hosts}
            deps_during = {n: host_docker(the_lab.hosts[n], "ps", "-q", "--filter",
                                          "label=bluegreen.role=dependency") for n in deps_before}
        back = time.monotonic()
    failed = list(client.failures)
    assert "health gate" in message and victim_instance in message, message[-2000:]
    for other in others:
        assert instance_id(ENV, "vizconfig", "blue", other, 0) not in message.split("Failing:")[-1]
    assert detected <= GATE_TIMEOUT_S + 15, detected
    assert live_during == live_before
    assert deps_during == deps_before
    # A request in flight to the victim's instance when its cable is cut gets no answer (nginx
    # waits its read timeout on that connection); the loop sends one request at a time, so at
    # most that one. Every request sent after the cut is answered.
    assert all(sent < cut for sent, *_ in failed) and len(failed) <= 1, failed[:5]
    the_lab.wait_healthy()
    with loop() as client:
        rerun = time.monotonic()
        environment.up()
        converged = time.monotonic()
        assert served() == ("3.0.0", "blue")
    assert client.failures == [], client.failures[:5]
    record("b_host_link_down", client, host=victim, detect_s=detected, failed_during_cut=len(failed),
           rerun_s=converged - rerun, converged_after_link_up_s=converged - back)


def logged_done(log: str, offset: int, resource: str) -> bool:
    """Whether the update logged (after `offset`) that `resource` was created or updated."""
    with open(log, encoding="utf-8") as handle:
        handle.seek(offset)
        return any(f" {resource} " in line and (" updated " in line or " created " in line)
                   for line in handle)


@contextlib.contextmanager
def link_down(the_lab: Lab, name: str):
    """The lab host's cable cut for the block (yields when); put back even when the block fails,
    so the drills after it find every host."""
    lab("link-down", the_lab.number(name))
    try:
        yield time.monotonic()
    finally:
        lab("link-up", the_lab.number(name))


def container_identity_on(the_lab: Lab, host: str, colour: str) -> str:
    name = docker_name(instance_id(ENV, "vizconfig", colour, host, 0))
    return host_docker(the_lab.hosts[host], "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", name)


def kill_everything_below(leader: int) -> None:
    """SIGKILL to the session `leader` leads and to every process below it, at once."""
    below = descendants(leader)
    os.killpg(leader, signal.SIGKILL)
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def descendants(pid: int) -> list[int]:
    """Processes below `pid` (from /proc), children first found first."""
    parents = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            parents[int(stat.split("/")[2])] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def test_drill_c_kill_9_of_pulumi_up_during_the_flip(drill):
    the_lab, _, environment = drill
    the_lab.wait_healthy()
    set_service(environment, the_lab, live="green", blue=BLUE_3, green={"version": "4.0.0"})
    command = [os.path.join(REPO, "bg"), "pulumi", "up", "--yes", "--skip-preview", "--stack", STACK]
    log = open(os.path.join(LOG_DIR, f"{STACK}-killed.log"), "a")
    with loop() as client:
        # Its own session: the kill takes `./bg`, the lock holder, the Pulumi CLI and its plugins
        # in one go, as a dead machine would (killing `./bg` alone left the engine running on).
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        started = time.monotonic()
        killed_at = None
        try:
            for line in process.stdout:
                log.write(line)
                # The flip: green's gate now blocks (the new containers exist and registered).
                if "green-gate" in line and ("updating" in line or "creating" in line):
                    kill_everything_below(process.pid)
                    killed_at = time.monotonic()
                    break
                assert time.monotonic() - started < 300, "the flip never started"
            process.wait(10)
            assert killed_at is not None, "pulumi up ended before the flip"
            assert state_locks(STACK), "the killed update left no lock (the drill did not hit the update)"
            assert served()[1] == "blue", "traffic moved before the flip"
            rerun = time.monotonic()
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
            converged = time.monotonic()
        finally:
            # A failed drill must not leave the killed update's lock to the drills after it.
            subprocess.run([os.path.join(REPO, ".venv", "bin", "python"), "-m", "bluegreen.delivery.recovery",
                            "--stack", STACK], cwd=REPO, capture_output=True)
        log.write(result.stdout + result.stderr)
        assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
        assert served() == ("4.0.0", "green")
    log.close()
    assert "cleared the lock" in result.stderr + result.stdout
    assert client.failures == [], client.failures[:5]
    record("c_kill_9_during_flip", client, killed_after_s=killed_at - started,
           detect_s=0.0,  # the re-run finds the dead process's lock before it starts
           rerun_converged_s=converged - rerun,
           pending_resolved="interrupted while" in result.stderr + result.stdout)


def test_drill_d_proxy_killed_serves_last_good_config_at_once(drill):
    the_lab, _, _ = drill
    the_lab.wait_healthy()
    home = the_lab.hosts[the_lab.proxy_host]
    proxy = proxy_container(PLATFORM, the_lab.proxy_host, True)
    agent = docker_name(PLATFORM, "consul", the_lab.proxy_host)
    # This proxy at its own address: the virtual one may move to the other proxy meanwhile.
    own = f"{the_lab.proxy_url(the_lab.proxy_host)}/{ENV}/vizconfig/"
    live = served(own)
    # With the proxy's Consul agent away it cannot render anything new: whatever it serves after
    # the restart is the configuration it had applied before.
    host_docker(home, "stop", agent)
    try:
        pid = int(host_docker(home, "inspect", "-f", "{{.State.Pid}}", proxy))
        with RequestLoop(own, rate=20, max_requests=2000, max_seconds=60) as client:
            time.sleep(1)
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            _, first_ok = wait_until(lambda: served(own) == live, 30, interval_s=0.05,
                                     what="the restarted proxy serves the live colour")
            time.sleep(2)
        restarts = int(host_docker(home, "inspect", "-f", "{{.RestartCount}}", proxy))
        after = [r for r in client.results if r[0] >= killed]
        assert restarts >= 1
        assert all(r[2] == live[1] for r in after if r[1] == 200)
        # The old nginx may answer a moment after the kill: the outage ends with the first
        # success after the last refusal, and nothing fails after that.
        refused = [r for r in after if r[1] != 200]
        back = next((r[0] for r in after if refused and r[0] > refused[-1][0] and r[1] == 200), None)
        assert refused == [] or back is not None
        outage = (back - killed) if back else first_ok
        assert outage < 5
    finally:
        host_docker(home, "start", agent)
    # With its agent back the proxy follows Consul again, still serving the live colour.
    the_lab.wait_healthy()
    assert served(own) == live
    record("d_proxy_killed", client, serving_again_after_s=outage,
           failed_while_restarting=len(refused), restarts=restarts)


def test_drill_e_a_host_restarted(drill):
    the_lab, _, _ = drill
    victim = the_lab.service_hosts[-1]
    address = the_lab.hosts[victim]["address"]
    the_lab.wait_healthy()
    the_lab.hand_address_to(the_lab.proxy_host)
    live = served()
    before = {c: (the_lab.registration(victim, c) or {}).get("Port") for c in ("blue", "green")}
    with loop() as client:
        down = time.monotonic()
        lab("stop-host", the_lab.number(victim))
        stopped = time.monotonic() - down
        _, detected = wait_until(lambda: f"server {address}:" not in the_lab.live_upstream(live[1]), 60,
                                 interval_s=0.2, what=f"the proxy drops {victim}")
        up = time.monotonic()
        lab("start-host", the_lab.number(victim))
        booted = time.monotonic() - up

        def rejoined():
            registration = the_lab.registration(victim, live[1])
            if not registration:
                return False
            port = json.loads(host_docker(
                the_lab.hosts[victim], "inspect", "-f", "{{json .NetworkSettings.Ports}}",
                docker_name(instance_id(ENV, "vizconfig", live[1], victim, 0))))
            published = int(next(iter(port.values()))[0]["HostPort"])
            return registration["Port"] == published and \
                f"server {address}:{published} " in the_lab.live_upstream(live[1]) and published

        port, converged = wait_until(rejoined, 120, interval_s=0.2, what=f"{victim} back in rotation")
        server_back = the_lab.wait_healthy()
        assert served() == live
    assert client.failures == [], client.failures[:5]
    record("e_host_restarted", client, host=victim, stop_s=stopped, detect_s=detected,
           boot_s=booted, back_in_rotation_after_boot_s=converged, converged_s=booted + converged,
           server_healthy_after_rotation_s=server_back,
           port_before=before[live[1]], port_after=port)


def test_f_a_caller_on_every_service_host_reaches_its_callee_through_the_proxy(drill):
    # frontend calls vizconfig through the proxies' virtual address, from every host (also where
    # a proxy runs: the address may be on the other one).
    the_lab, _, environment = drill
    the_lab.wait_healthy()
    environment.update_config(lambda c: c["bluegreen:services"].__setitem__("frontend", {
        "manifest": "services/frontend/service.yaml", "live": "blue", "blue": {"version": "1.0.0"},
        "gateTimeout": GATE_TIMEOUT_S, "hosts": the_lab.service_hosts}))
    environment.up()
    for name in the_lab.service_hosts:
        host = the_lab.hosts[name]
        container = docker_name(instance_id(ENV, "frontend", "blue", name, 0))
        env = json.loads(host_docker(host, "inspect", "-f", "{{json .Config.Env}}", container))
        reach = the_lab.virtual_address
        assert f"VIZCONFIG_URL=http://{reach}:{PORTS['proxy']}/{ENV}/vizconfig/" in env, (name, env)
        # Each instance asked directly (at its published port), so each host's path is used.
        ports = json.loads(host_docker(host, "inspect", "-f", "{{json .NetworkSettings.Ports}}", container))
        published = next(iter(ports.values()))[0]
        answer = requests.get(f"http://{published['HostIp']}:{published['HostPort']}/", timeout=5)
        assert answer.status_code == 200, (name, answer.status_code, answer.text[:300])
        called = answer.json()["vizconfig"]
        assert (called.get("version"), called.get("colour")) == served(), (name, called)
    FIGURES["f_calls_across_hosts"] = {"callers": the_lab.service_hosts, "callee": "vizconfig"}


def fresh_and_kept() -> tuple[RequestLoop, RequestLoop]:
    """A fresh-connection client and a keep-alive one on the virtual address."""
    return (RequestLoop(STABLE, rate=10, max_requests=3000, max_seconds=240),
            RequestLoop(STABLE, rate=10, max_requests=3000, max_seconds=240, keep_alive=True))


def longest_gap(client: RequestLoop, since: float) -> float:
    """The longest time between two successes of `client` around and after `since`."""
    times = [r[0] for r in client.results if r[1] == 200]
    gaps = [b - a for a, b in zip(times, times[1:]) if b >= since]
    return max(gaps, default=0.0)


def loss_figures(lost: str, fresh: RequestLoop, kept: RequestLoop, since: float, moved: float,
                 back: float) -> dict:
    """What losing the proxy on `lost` at `since` cost: failed requests, the longest wait between
    two answers, when the address answered from the survivor (it moved `moved` s after `since`),
    and `back`: when the lost proxy served again."""
    answered = first_answer(fresh, since + moved) - since
    return {"lost": lost, "failed_fresh": len(fresh.failures),
            "failed_keep_alive": len(kept.failures), "requests_fresh": len(fresh.results),
            "requests_keep_alive": len(kept.results), "address_moved_s": moved,
            "answered_from_survivor_s": answered, "fresh_longest_gap_s": longest_gap(fresh, since),
            "keep_alive_longest_gap_s": longest_gap(kept, since),
            # The keep-alive client's first answer on a connection opened after the move.
            "keep_alive_answered_s": first_answer(kept, since + moved) - since,
            "lost_serves_again_s": back}


def first_answer(client: RequestLoop, after: float) -> float:
    """When `client` sent its first request after `after` that was answered (monotonic)."""
    return next((r[0] for r in client.results if r[0] >= after and r[1] == 200), float("inf"))


def serves_again(the_lab: Lab, lost: str, since: float) -> float:
    """Seconds from `since` until the proxy on `lost` answers at its own address."""
    def answers() -> bool:
        try:
            return requests.get(f"{the_lab.proxy_url(lost)}/healthz", timeout=1).ok
        except requests.RequestException:
            return False
    wait_until(answers, 90, interval_s=0.1, what=f"the proxy on {lost} serves again")
    return time.monotonic() - since


def moved_to(the_lab: Lab, survivor: str, since: float) -> float:
    """Seconds from `since` until the virtual address is on `survivor` (polled every 20 ms)."""
    wait_until(lambda: survivor in the_lab.address_holders(), 10, interval_s=0.02,
               what=f"the virtual address on {survivor}")
    return time.monotonic() - since


def the_other(the_lab: Lab, name: str) -> str:
    return next(n for n in the_lab.proxy_hosts if n != name)


def test_drill_g_the_address_holders_proxy_killed_during_a_flip(drill):
    the_lab, _, environment = drill
    the_lab.wait_healthy()
    (holder,) = the_lab.address_holders()
    survivor = the_other(the_lab, holder)
    _, live = served()
    target = "blue" if live == "green" else "green"
    set_service(environment, the_lab, live=target, blue=BLUE_3, green={"version": "4.0.0"})
    pid = int(host_docker(the_lab.hosts[holder], "inspect", "-f", "{{.State.Pid}}",
                          proxy_container(PLATFORM, holder, True)))
    logged = os.path.getsize(environment.log) if os.path.exists(environment.log) else 0
    fresh, kept = fresh_and_kept()
    with fresh, kept:
        time.sleep(1)
        deploy = Background(environment)
        # The flip starts (the alias is about to be checked at every proxy and written): kill.
        wait_until(lambda: logged_line(environment.log, logged, f"{ENV}-vizconfig-alias-key updating"),
                   240, interval_s=0.05, what="the flip starts")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        moved = moved_to(the_lab, survivor, killed)
        back = serves_again(the_lab, holder, killed)
        deploy.join(300)
        time.sleep(2)
    figures = loss_figures(holder, fresh, kept, killed, moved, back)
    proofs = environment.outputs()["services"]["vizconfig"].get("flipProofs") if deploy.error is None else None
    record("g_address_holder_killed_during_flip", fresh, **figures, flip_proofs=proofs,
           deploy_s=deploy.finished - deploy.started, killed_after_deploy_start_s=killed - deploy.started)
    print(f"\ndrill g: {json.dumps(FIGURES['g_address_holder_killed_during_flip'])}")
    assert deploy.error is None, deploy.error
    assert served()[1] == target
    # Proven on each proxy, the one that was killed included.
    assert set(proofs) == set(the_lab.proxy_hosts), proofs
    assert all(r[2] == target for r in fresh.results if r[0] > deploy.finished and r[1] == 200)
    assert figures["keep_alive_answered_s"] < 2, figures


def test_drill_h_the_address_holders_link_cut(drill):
    the_lab, _, _ = drill
    the_lab.wait_healthy()
    (holder,) = the_lab.address_holders()
    survivor = the_other(the_lab, holder)
    live = served()
    fresh, kept = fresh_and_kept()
    with fresh, kept:
        time.sleep(1)
        with link_down(the_lab, holder) as cut:
            moved = moved_to(the_lab, survivor, cut)
            time.sleep(5)    # traffic on the survivor alone
        back = serves_again(the_lab, holder, time.monotonic())
        the_lab.wait_healthy()
        time.sleep(2)
    figures = loss_figures(holder, fresh, kept, cut, moved, back)
    assert served() == live
    # The host that comes back does not take the address away again (no preemption).
    assert the_lab.address_holders() == {survivor}
    record("h_address_holder_link_cut", fresh, **figures)
    print(f"\ndrill h: {json.dumps(FIGURES['h_address_holder_link_cut'])}")
    assert figures["failed_fresh"] == 0 and figures["failed_keep_alive"] == 0, figures
    # The cut host also runs an instance: a request nginx sends there first waits the connect
    # timeout before it goes to the next instance, so a new connection is answered within the
    # address move plus that wait (measured 0.97-2.89 s), not within the move alone.
    assert figures["keep_alive_answered_s"] < moved + CONNECT_TIMEOUT_S + 1, figures


def kv_json(the_lab: Lab, key: str) -> dict | None:
    """A JSON value of Consul KV, asked of the platform host's agent (None: no such key)."""
    response = the_lab.consul.get(f"{the_lab.local_agent}/v1/kv/{key}", params={"raw": "true"}, timeout=3)
    return None if response.status_code == 404 else response.json()


def acting_host(the_lab: Lab) -> str | None:
    """The host of the watchdog that holds the leader key (None: nobody holds it)."""
    holder = kv_json(the_lab, watchdog_lock_key())
    return holder["host"] if holder else None


def watchdogs_up(the_lab: Lab) -> int:
    """How many of the platform's watchdogs pass their checks (each registers with its agent)."""
    return len(the_lab.consul.get(f"{the_lab.local_agent}/v1/health/service/bluegreen-watchdog",
                                  params={"passing": "true"}, timeout=3).json())


def node_failed(the_lab: Lab, node: str) -> bool:
    """Whether Consul's servers hold `node`'s gossip check (serfHealth) critical."""
    checks = the_lab.consul.get(f"{the_lab.local_agent}/v1/health/node/{node}", timeout=3).json()
    return any(c["CheckID"] == "serfHealth" and c["Status"] == "critical" for c in checks)


def hand_lead_to(the_lab: Lab, host: str) -> None:
    """Makes the watchdog on `host` the acting one: the other is stopped until it has taken the
    leader key, then started again, and back as the standby."""
    holder = acting_host(the_lab)
    if holder != host:
        number = str(the_lab.watchdog_hosts.index(holder) + 1)
        container = docker_name(PLATFORM, "watchdog", number)
        host_docker(the_lab.hosts[holder], "stop", "-t", "2", container)
        try:
            wait_until(lambda: acting_host(the_lab) == host, 30, interval_s=0.2,
                       what=f"the watchdog on {host} acts")
        finally:
            host_docker(the_lab.hosts[holder], "start", container)
    wait_until(lambda: watchdogs_up(the_lab) == 2, 30, interval_s=0.2, what="both watchdogs up")


def save_watchdog_logs(the_lab: Lab) -> None:
    """Both watchdogs' logs, as reports/e2e/e2e-lab-watchdog-N.log (on the engines' sockets:
    this works with a host's link cut)."""
    os.makedirs(LOG_DIR, exist_ok=True)
    for number, host in enumerate(the_lab.watchdog_hosts, start=1):
        name = docker_name(PLATFORM, "watchdog", str(number))
        logs = subprocess.run(["docker", "-H", f"unix://{the_lab.hosts[host]['dockerSocket']}", "logs",
                               "--timestamps", name], capture_output=True, text=True, timeout=60)
        with open(os.path.join(LOG_DIR, f"e2e-lab-watchdog-{number}.log"), "w", encoding="utf-8") as handle:
            handle.write(logs.stdout + logs.stderr)


def flip_with_a_bake(environment: Deployment, target: str) -> None:
    """`target` goes live with a 20 s bake; the colours keep what they run (it gets 4.0.0 when it
    runs nothing yet)."""
    def change(config: dict) -> None:
        service = config["bluegreen:services"]["vizconfig"]
        service.setdefault(target, {"version": "4.0.0"})
        service.update(live=target, bakeTime="20s")
    environment.update_config(change)


@pytest.mark.xfail(strict=False, reason=(
    "known defect, docs/operations.md: in 3 of 9 runs of the whole module the takeover came late "
    "(30 s) or Consul did not declare the cut host failed within 40 s, after a Consul leadership "
    "change near the cut; it runs and records its figures, and does not stop the suite until fixed"))
def test_drill_i_the_acting_watchdogs_host_lost_during_a_bake(drill):
    the_lab, _, environment = drill
    the_lab.wait_healthy()
    standby, acting = the_lab.watchdog_hosts
    try:
        lose_acting_watchdogs_host(the_lab, environment, standby, acting)
    finally:
        save_watchdog_logs(the_lab)


def lose_acting_watchdogs_host(the_lab: Lab, environment: Deployment, standby: str, acting: str) -> None:
    """Drill (i) from the watchdog on `acting` holding the key to the bake ended by `standby`'s."""
    # Another host leads Consul: what is measured is the takeover, not a new election as well.
    if the_lab.leader() == acting:
        the_lab.make_leader(standby)
    hand_lead_to(the_lab, acting)
    _, live = served()
    target = "blue" if live == "green" else "green"
    flip_with_a_bake(environment, target)
    bake = bake_key(ENV, "vizconfig")
    node = the_lab.consul.get(f"{the_lab.agent(acting)}/v1/agent/self", timeout=3).json()["Config"]["NodeName"]
    with loop() as client:
        environment.up()
        assert (kv_json(the_lab, bake) or {}).get("status") == "baking"
        with link_down(the_lab, acting) as cut:
            wait_until(lambda: node_failed(the_lab, node), 40, interval_s=0.05,
                       what=f"Consul sees {acting} failed")
            failed = time.monotonic() - cut
            wait_until(lambda: acting_host(the_lab) != acting, 40, interval_s=0.05,
                       what="the key freed")
            freed = time.monotonic() - cut
            wait_until(lambda: acting_host(the_lab) == standby, 40, interval_s=0.05,
                       what=f"the watchdog on {standby} acts")
            took_over = time.monotonic() - cut
            # Only the standby can write now (the cut host's Consul is cut off with it).
            _, waited = wait_until(lambda: kv_json(the_lab, bake)["status"] != "baking", 60,
                                   interval_s=0.2, what="the bake to end")
            ended = (kv_json(the_lab, bake) or {}).get("status")
        the_lab.wait_healthy()
        time.sleep(1)
    record("i_acting_watchdogs_host_lost_during_a_bake", client, lost=acting, node_failed_s=failed,
           key_freed_s=freed, took_over_s=took_over, bake_ended_s=took_over + waited, bake_status=ended)
    print(f"\ndrill i: {json.dumps(FIGURES['i_acting_watchdogs_host_lost_during_a_bake'])}")
    assert ended == "baked" and served()[1] == target
    assert client.failures == [], client.failures[:5]
    # Consul's gossip decides when the host counts as lost (measured 5.6 and 5.9 s, once more than
    # 15 s, cause not found: see docs/operations.md); from then on the takeover is the product's.
    assert took_over - failed < 1, FIGURES["i_acting_watchdogs_host_lost_during_a_bake"]
    # The host that comes back stands by: nobody took the key from the one acting.
    assert acting_host(the_lab) == standby


def logged_line(log: str, offset: int, text: str) -> bool:
    """Whether the update logged (after `offset`) a line containing `text`."""
    with open(log, encoding="utf-8") as handle:
        handle.seek(offset)
        return any(text in line for line in handle)
