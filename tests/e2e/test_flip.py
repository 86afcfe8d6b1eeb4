"""The flip end to end: the preview URI answers when an offline deploy returns, long-lived streams
drain across a flip within the proxy's bound (spread out, then on the new colour), and `pulumi up`
proves that the proxy serves the new colour, failing (and putting the alias back) when it does not.
Real build, Consul, consul-template and nginx; the tests run in order on one stack."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
import yaml
from pulumi import automation as auto

from bluegreen.components.naming import SPLIT_COOKIE

from e2e_harness import (LOG_DIR, REPO, Deployment, InBackground, RequestLoop, container_identity,
                         container_processes, deployed, deployer_consul, platform_config, wait_until)

STACK = ENV = "e2e-flip"
PORTS = {"consul": 28650, "serf": 28651, "server": 28652, "registry": 28653, "proxy": 28654}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
STABLE = f"{PROXY}/{ENV}/vizconfig/"
PREVIEW = f"{PROXY}/preview/{ENV}/vizconfig/"
ALIAS = f"{CONSUL}/v1/kv/bluegreen/aliases/{ENV}/vizconfig"
PROXY_CONTAINER = f"bluegreen-{STACK}-proxy"
DRAIN_S = 8.0
WINDOW = (0.5, 0.9)       # services/vizconfig/app/streams.py: where its streams end in the drain
GREEN_REDEPLOYED = {"version": "1.0.0", "env": {"DEPLOY": "2"}}
FIGURES: dict = {}


def service_config(**overrides) -> dict:
    settings = {"manifest": "services/vizconfig/service.yaml", "live": "blue", "gateTimeout": 60,
                "blue": {"version": "1.0.0"}, "green": {"version": "1.0.0"}}
    settings.update(overrides)
    return {"vizconfig": settings}


@pytest.fixture(scope="module")
def deployment():
    config = platform_config(PORTS, ENV)
    config["bluegreen:platform"]["proxy"]["drainTimeout"] = f"{DRAIN_S:.0f}s"
    config["bluegreen:services"] = service_config()
    with deployed(STACK, config, FIGURES, "flip") as deployment:
        yield deployment


def set_services(deployment: Deployment, **overrides) -> None:
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", service_config(**overrides)))


def proxy_says(url: str) -> tuple[int, str, str, str]:
    """(status, X-Bluegreen-Route, X-Bluegreen-Colour, X-Service-Colour) on a fresh connection."""
    response = requests.get(url, timeout=3, headers={"Connection": "close"})
    h = response.headers
    return (response.status_code, h.get("X-Bluegreen-Route", ""), h.get("X-Bluegreen-Colour", ""),
            h.get("X-Service-Colour", ""))


def reloads() -> int:
    logs = subprocess.run(["docker", "logs", PROXY_CONTAINER], capture_output=True, text=True)
    return sum(line.startswith(("apply-config:", "apply-aliases:")) and "applied" in line
               for line in (logs.stdout + logs.stderr).splitlines())


def test_a_first_deploy_serves_both_uris_when_up_returns(deployment):
    outputs = deployment.up()
    # No waiting: the offline colour's gate returned only once the proxy served its preview.
    assert proxy_says(PREVIEW) == (200, f"preview/{ENV}/vizconfig", "green", "green")
    assert proxy_says(STABLE) == (200, f"{ENV}/vizconfig", "blue", "blue")
    service = outputs["services"]["vizconfig"]
    assert service["live"] == "blue"
    FIGURES["first_alias_write_to_serving_s"] = service["flipSeconds"]
    assert 0 < service["flipSeconds"] < 5


def test_b_a_new_offline_deploy_answers_on_its_preview_uri_when_up_returns(deployment):
    green = f"bluegreen-{ENV}-vizconfig-green-local-0"
    before = container_identity(green)
    set_services(deployment, green=GREEN_REDEPLOYED)
    deployment.up()
    answers = []
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        answers.append(proxy_says(PREVIEW))
        time.sleep(0.02)
    assert container_identity(green) != before, "green was not redeployed"
    assert answers[0] == (200, f"preview/{ENV}/vizconfig", "green", "green")
    assert all(a[0] == 200 for a in answers), [a for a in answers if a[0] != 200][:3]


class SseClient:
    """Holds an event stream open and, when it ends, reconnects after half a second (as an
    EventSource would). Records per stream: the colour the proxy and the service name, each
    event's arrival and colour, and when and how it ended. Bounded by `max_seconds`."""

    def __init__(self, url: str, max_seconds: float):
        self.url, self.max_seconds = url, max_seconds
        self.streams: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        start = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
            stream = {"opened": time.monotonic(), "events": [], "ended": None, "how": None,
                      "proxy_colour": None, "service_colour": None}
            self.streams.append(stream)
            try:
                with requests.get(self.url, stream=True, timeout=(2, 5)) as response:
                    stream["proxy_colour"] = response.headers.get("X-Bluegreen-Colour")
                    stream["service_colour"] = response.headers.get("X-Service-Colour")
                    for line in response.iter_lines(chunk_size=None):
                        if line.startswith(b"data:"):
                            stream["events"].append((time.monotonic(), json.loads(line[5:])["colour"]))
                        if self._stop.is_set():
                            break
                stream["how"] = "ended by the server"
            except (requests.RequestException, ValueError) as error:
                stream["how"] = type(error).__name__
            stream["ended"] = time.monotonic()
            self._stop.wait(0.5)

    def start(self) -> "SseClient":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class WorkerWatch(InBackground):
    """Samples the proxy's nginx workers that are shutting down (every 0.1 s): for each, when it
    was first and last seen in that state."""

    def __init__(self, container: str):
        init = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", container],
                              capture_output=True, text=True, check=True).stdout.strip()
        self.namespace = os.readlink(f"/proc/{init}/ns/pid")
        self.seen: dict[int, list[float]] = {}

    def shutting_down(self) -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if b"worker process is shutting down" not in handle.read():
                        continue
                if os.readlink(f"/proc/{entry}/ns/pid") == self.namespace:
                    found.add(int(entry))
            except OSError:
                continue
        return found

    def _run(self):
        while not self._stop.wait(0.1):
            now = time.monotonic()
            for pid in self.shutting_down():
                self.seen.setdefault(pid, [now, now])[1] = now


def alias_written(colour: str, timeout_s: float) -> float:
    """When the alias first says `colour` (polled every 10 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if deployer_consul(STACK).get(ALIAS, params={"raw": "true"}, timeout=1).text == colour:
                return time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise AssertionError(f"the alias never said {colour}")


def test_c_long_lived_streams_drain_across_a_flip_then_reconnect_to_the_new_colour(deployment):
    bound = 60 + 3 * DRAIN_S
    following = [SseClient(f"{STABLE}events", bound).start() for _ in range(8)]
    holding = [SseClient(f"{STABLE}events?hold=1", bound).start() for _ in range(2)]
    clients = following + holding
    try:
        wait_until(lambda: all(len(c.streams[0]["events"]) >= 2 for c in clients), 10,
                   what="every stream has events")
        before = reloads()
        set_services(deployment, live="green", green=GREEN_REDEPLOYED)
        with WorkerWatch(PROXY_CONTAINER) as workers:
            seen_at = {}
            watcher = threading.Thread(target=lambda: seen_at.setdefault("t", alias_written("green", 120)),
                                       daemon=True)
            watcher.start()
            outputs = deployment.up()
            watcher.join(timeout=5)
            flipped = seen_at["t"]
            flip_reloads = reloads() - before
            wait_until(lambda: all(len(c.streams) >= 2 and len(c.streams[1]["events"]) >= 2
                                   for c in clients), DRAIN_S + 10, what="every client reconnected")
            time.sleep(1)
    finally:
        for client in clients:
            client.stop()

    FIGURES["flip_seconds_output"] = outputs["services"]["vizconfig"]["flipSeconds"]
    FIGURES["flip_reloads"] = flip_reloads
    first = {id(c): c.streams[0] for c in clients}
    ends = {id(c): first[id(c)]["ended"] - flipped for c in clients}
    FIGURES["stream_ends_after_flip_s"] = {
        "following": sorted(round(ends[id(c)], 2) for c in following),
        "holding": sorted(round(ends[id(c)], 2) for c in holding)}
    FIGURES["holding_ended_how"] = [first[id(c)]["how"] for c in holding]
    FIGURES["reconnected_to"] = [c.streams[1]["proxy_colour"] for c in clients]
    FIGURES["retired_workers_lived_s"] = sorted(round(last - first_seen, 2)
                                                for first_seen, last in workers.seen.values())

    # The flip: one reload, and `up` measured it.
    assert 0 < outputs["services"]["vizconfig"]["flipSeconds"] < 1
    assert flip_reloads == 1
    for client in clients:
        stream = first[id(client)]
        # Each stream kept working on blue until it ended: events about every second, all blue.
        assert stream["proxy_colour"] == "blue" and stream["service_colour"] == "blue"
        assert {colour for _, colour in stream["events"]} == {"blue"}
        times = [t for t, _ in stream["events"]] + [stream["ended"]]
        assert max(b - a for a, b in zip(times, times[1:])) < 2.5, "a stream stalled before it ended"
        # ...and the client's reconnect landed on green.
        assert client.streams[1]["proxy_colour"] == "green"
        assert {colour for _, colour in client.streams[1]["events"]} == {"green"}
    # The service ends its streams spread over its window inside the drain...
    following_ends = sorted(ends[id(c)] for c in following)
    assert DRAIN_S * WINDOW[0] - 0.5 <= following_ends[0]
    assert following_ends[-1] <= DRAIN_S * WINDOW[1] + 1.0
    assert following_ends[-1] - following_ends[0] >= 0.8, following_ends
    # ...and the proxy ends the streams that ignore flips at its bound.
    for client in holding:
        assert DRAIN_S - 1.0 <= ends[id(client)] <= DRAIN_S + 2.5, ends[id(client)]
    # No retired nginx worker outlived the bound.
    assert workers.seen, "no worker was seen shutting down"
    assert all(last - first_seen <= DRAIN_S + 1.5 for first_seen, last in workers.seen.values()), \
        workers.seen
    assert not workers.shutting_down()


def test_d_an_alias_the_proxy_does_not_serve_fails_the_up_and_is_put_back(deployment):
    # The proxy's renderer (consul-template) stopped: nginx keeps answering, but a flip written
    # now never reaches it. The up must say so, and put the alias back.
    [renderer] = container_processes(PROXY_CONTAINER, "consul-template")
    set_services(deployment, live="blue", green=GREEN_REDEPLOYED)
    os.kill(renderer, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(auto.CommandError) as failure:
            deployment.up()
        FIGURES["failed_proof_up_s"] = round(time.monotonic() - start, 1)
        message = str(failure.value)
        assert f"alias bluegreen/aliases/{ENV}/vizconfig was written (blue)" in message
        assert f"the proxy at {STABLE}health still serves green" in message
        assert "traffic did not move" in message and "put back to green" in message
        assert deployer_consul(STACK).get(ALIAS, params={"raw": "true"}, timeout=3).text == "green"
        assert proxy_says(STABLE)[2:] == ("green", "green")
    finally:
        os.kill(renderer, signal.SIGCONT)
    # With the renderer back, the same up flips and proves it.
    outputs = deployment.up()
    assert proxy_says(STABLE)[2:] == ("blue", "blue")
    assert deployer_consul(STACK).get(ALIAS, params={"raw": "true"}, timeout=3).text == "blue"
    assert 0 < outputs["services"]["vizconfig"]["flipSeconds"] < 1


# -- splits (model.split, delivery/split.py): the same stack, green running its redeploy offline

SPLIT_KEY = f"{CONSUL}/v1/kv/bluegreen/splits/{ENV}/vizconfig"
CLIENTS = 600


def split_command(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "split", "vizconfig", "--stack", STACK,
                             *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    with open(os.path.join(LOG_DIR, f"{STACK}-split.log"), "a", encoding="utf-8") as log:
        log.write(f"$ split {' '.join(args)}\n{result.stdout}{result.stderr}\n")
    return result


def colour_for(headers: dict) -> tuple[str, str | None]:
    """(the colour that answered, the cookie the proxy set) for one request on a fresh connection."""
    response = requests.get(STABLE, timeout=5, headers={"Connection": "close", **headers})
    assert response.status_code == 200, response.status_code
    return response.headers["X-Bluegreen-Colour"], response.cookies.get(SPLIT_COOKIE)


def offline_share(clients: int = CLIENTS) -> float:
    """The share (in points) of `clients` distinct clients, each with its own cookie value, that
    the stable URI sends to green."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        colours = list(pool.map(lambda i: colour_for({"Cookie": f"{SPLIT_COOKIE}=client-{i}"})[0],
                                range(clients)))
    return 100.0 * colours.count("green") / clients


def test_e_a_split_sends_its_share_of_clients_offline_and_each_client_stays_on_its_colour(deployment):
    shares = {}
    with RequestLoop(STABLE, rate=20, max_requests=4000, max_seconds=200) as loop:
        for percent in (5, 20, 50):
            result = split_command("--percent", str(percent))
            assert result.returncode == 0, result.stdout + result.stderr
            shares[percent] = offline_share()
        # A fresh client gets the cookie, and keeps its colour with it.
        colour, cookie = colour_for({})
        assert cookie, "the proxy set no cookie during a split"
        seen = {colour_for({"Cookie": f"{SPLIT_COOKIE}={cookie}"})[0] for _ in range(30)}
        # Back to 20%: the clients of buckets 0-19 stay on green, none of the others does.
        result = split_command("--percent", "20")
        assert result.returncode == 0, result.stdout + result.stderr
    FIGURES["split_shares_of_600_clients"] = shares
    FIGURES["split_loop"] = {"requests": len(loop.results), "failed": len(loop.failures)}
    for percent, measured in shares.items():
        assert abs(measured - percent) <= 5, shares
    assert seen == {colour}, f"a client with its cookie saw {seen}"
    assert not loop.failures, loop.failures[:5]
    record = deployer_consul(STACK).get(SPLIT_KEY, params={"raw": "true"}, timeout=3).json()
    assert (record["colour"], record["percent"]) == ("green", 20)
    assert int(deployment_file_split(deployment)["percent"]) == 20
    assert reloads_during_split() == 0
    wait_until(lambda: (catalogue_split() or {}).get("percent") == 20, 5, what="the catalogue's split")
    status = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "status", "vizconfig", "--stack", STACK],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "  split: 20% to green (sticky by cookie)" in status.stdout, status.stdout + status.stderr


def catalogue_split() -> dict | None:
    services = requests.get(f"{PROXY}/catalogue.json", timeout=3).json()["services"]
    return next(s["split"] for s in services if s["entry"]["environment"] == ENV)


def deployment_file_split(deployment: Deployment) -> dict:
    with open(deployment.path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["config"]["bluegreen:services"]["vizconfig"].get("split")


def reloads_during_split() -> int:
    """nginx reloads apply-aliases made for a split change (none: a share is marker files)."""
    logs = subprocess.run(["docker", "logs", PROXY_CONTAINER], capture_output=True, text=True)
    lines = (logs.stdout + logs.stderr).splitlines()
    return sum("splits" in line and "reloaded" in line for line in lines)


def test_f_a_cohort_goes_to_its_colour_and_a_deploy_to_a_split_colour_is_refused(deployment):
    cohort = {"header": "X-Beta", "value": "1", "colour": "green"}
    set_services(deployment, green=GREEN_REDEPLOYED, split={"percent": 20, "cohorts": [cohort]})
    deployment.up()
    assert {colour_for({"X-Beta": "1", "Cookie": f"{SPLIT_COOKIE}=client-{i}"})[0]
            for i in range(20)} == {"green"}
    # Green serves a fifth of the clients: a new version there is refused before anything changes.
    set_services(deployment, green={"version": "1.0.0", "env": {"DEPLOY": "3"}},
                 split={"percent": 20, "cohorts": [cohort]})
    with pytest.raises(auto.CommandError) as failure:
        deployment.up()
    assert f"bluegreen/splits/{ENV}/vizconfig says the split sends it 20% of the stable traffic" \
        in str(failure.value)
    set_services(deployment, green=GREEN_REDEPLOYED, split={"percent": 20, "cohorts": [cohort]})


def test_g_zero_ends_the_split_and_a_hundred_is_a_flip_that_ends_it(deployment):
    with RequestLoop(STABLE, rate=20, max_requests=2000, max_seconds=120) as loop:
        result = split_command("--percent", "0")
        assert result.returncode == 0, result.stdout + result.stderr
        assert offline_share(100) == 0.0
        result = split_command("--percent", "100")
        assert result.returncode == 0, result.stdout + result.stderr
    assert not loop.failures, loop.failures[:5]
    assert deployer_consul(STACK).get(ALIAS, params={"raw": "true"}, timeout=3).text == "green"
    record = deployer_consul(STACK).get(SPLIT_KEY, params={"raw": "true"}, timeout=3).json()
    assert record["percent"] == 0 and record["cohorts"], record
    assert offline_share(100) == 100.0      # green is live: "offline_share" counts green answers
    assert int(deployment_file_split(deployment)["percent"]) == 0
