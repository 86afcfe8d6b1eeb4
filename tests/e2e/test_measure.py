"""Measure end to end: every request through the proxy is counted per colour (nginx's access log,
mtail) and Prometheus, started by the platform stack, holds exactly the counts a bounded client
sent; the bake watchdog judges a release by that traffic. Real build, Consul, nginx, mtail and
Prometheus on this machine's engine."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

import pytest
import requests

from e2e_harness import (LOG_DIR, REPO, RequestLoop, ServiceRepo, _image, chromium_dom, chromium_screenshot, deployed,
                         deployer_consul, platform_config, wait_until)

STACK = ENV = "e2e-measure"
PORTS = {"consul": 28440, "serf": 28441, "server": 28442, "registry": 28443, "proxy": 28444,
         "metrics": 28445, "prometheus": 28446, "delivery": 28447}
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
PROMETHEUS = f"http://127.0.0.1:{PORTS['prometheus']}"
STABLE = f"{PROXY}/{ENV}/vizconfig/"
PREVIEW = f"{PROXY}/preview/{ENV}/vizconfig/"
SCRAPE_S = 1
FIGURES: dict = {}
DEPLOYMENT: list = []   # the module's stack, for the flip
SERVICE_REPO = ServiceRepo()   # a copy of services/vizconfig: a later release fails a fifth of GET /


def edit_and_commit(stamp: str, **changes) -> None:
    """Edits the service repo and commits it: each release is built from a commit, whose time the
    release records (its lead time starts there)."""
    SERVICE_REPO.edit(stamp, **changes)
    git = ["git", "-C", SERVICE_REPO.root, "-c", "user.name=e2e", "-c", "user.email=e2e@localhost"]
    if not os.path.isdir(os.path.join(SERVICE_REPO.root, ".git")):
        subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", stamp], check=True)


def services(**overrides) -> dict:
    settings = {"manifest": SERVICE_REPO.manifest, "live": "blue", "blue": {"version": "1.0.0"}}
    return {"vizconfig": {**settings, **overrides}}


@pytest.fixture(scope="module")
def outputs():
    edit_and_commit("good")
    config = platform_config(PORTS, ENV)
    config["bluegreen:platform"]["proxy"]["metricsPort"] = PORTS["metrics"]
    config["bluegreen:platform"]["prometheus"] = {
        "image": _image("bluegreen/prometheus"), "port": PORTS["prometheus"], "retention": "1d",
        "scrapeInterval": f"{SCRAPE_S}s", "deliveryPort": PORTS["delivery"]}
    config["bluegreen:services"] = services()
    try:
        with deployed(STACK, config, FIGURES, "measure") as deployment:
            DEPLOYMENT[:] = [deployment]
            yield deployment.up()
    finally:
        SERVICE_REPO.remove()


def query(expression: str) -> dict[tuple, float]:
    """An instant query's result: each series' label values (sorted by name) -> its value."""
    response = requests.get(f"{PROMETHEUS}/api/v1/query", params={"query": expression}, timeout=5)
    response.raise_for_status()
    return {tuple(v for _, v in sorted(r["metric"].items())): float(r["value"][1])
            for r in response.json()["data"]["result"]}


def selector(colour: str, traffic: str) -> str:
    return (f'environment="{ENV}",service="vizconfig",colour="{colour}",traffic="{traffic}"')


def counts(colour: str, traffic: str) -> dict[str, float]:
    """Requests Prometheus holds for one colour and kind of traffic, by status class, and the
    latency histogram's count (`histogram`)."""
    by_status = query(f"sum by (status) (bluegreen_requests_total{{{selector(colour, traffic)}}})")
    found = {status: value for (status,), value in by_status.items()}
    histogram = query(f"sum(bluegreen_request_duration_seconds_count{{{selector(colour, traffic)}}})")
    found["histogram"] = next(iter(histogram.values()), 0.0)
    return found


def wait_for_counts(colour: str, traffic: str, expected: dict[str, float]) -> tuple[dict, float]:
    """Polls until Prometheus holds at least `expected` (scrapes are SCRAPE_S apart; mtail reads
    the log nginx flushes each second), then waits one more scrape for anything extra."""
    def reached():
        found = counts(colour, traffic)
        return found if all(found.get(k, 0) >= v for k, v in expected.items()) else None
    _, waited = wait_until(reached, 30, interval_s=0.2, what=f"{expected} for {colour} {traffic}")
    time.sleep(2 * SCRAPE_S)
    return counts(colour, traffic), waited


def send(url: str, count: int) -> list[float]:
    """`count` GETs, one connection each; returns each one's seconds."""
    seconds = []
    for _ in range(count):
        start = time.monotonic()
        requests.get(url, timeout=5, headers={"Connection": "close"})
        seconds.append(time.monotonic() - start)
    return seconds


def test_the_stack_outputs_prometheus_which_scrapes_the_proxy(outputs):
    assert outputs["prometheus"] == PROMETHEUS
    assert "Ready" in requests.get(f"{PROMETHEUS}/-/ready", timeout=5).text
    up = wait_until(lambda: query('up{job="proxy"}') or None, 30, what="the proxy's scrape")[0]
    assert list(up.values()) == [1.0]
    assert list(up) == [("up", f"127.0.0.1:{PORTS['metrics']}", "proxy")]   # __name__, instance, job


def test_prometheus_holds_exactly_the_requests_sent_per_colour_and_status(outputs):
    # The deploy's own proofs (the gate and the flip ask /health) are counted too: start from them.
    wait_until(lambda: counts("blue", "stable").get("2xx"), 30, what="the deploy's own requests")
    time.sleep(2 * SCRAPE_S)
    before = counts("blue", "stable")
    ok = send(STABLE, 50)
    missing = [requests.get(f"{STABLE}no-such-document", timeout=5) for _ in range(10)]
    assert {r.status_code for r in missing} == {404}
    # Neither the catalogue nor /healthz is a route: they answer and are not counted.
    assert requests.get(f"{PROXY}/catalogue/", timeout=5).status_code == 200
    assert requests.get(f"{PROXY}/catalogue.json", timeout=5).status_code == 200
    assert requests.get(f"{PROXY}/healthz", timeout=5).status_code == 200
    expected = {"2xx": before.get("2xx", 0) + 50, "4xx": before.get("4xx", 0) + 10,
                "histogram": before["histogram"] + 60}
    found, waited = wait_for_counts("blue", "stable", expected)
    assert found == {**before, **expected}
    FIGURES["last request to counted in Prometheus (s)"] = round(waited, 2)
    FIGURES["client p50 through the counting proxy (ms)"] = round(statistics.median(ok) * 1000, 2)


def test_a_rotation_of_the_access_log_under_traffic_loses_no_request(outputs):
    before = counts("blue", "stable")
    with RequestLoop(STABLE, rate=20, max_requests=60, max_seconds=10) as loop:
        time.sleep(1.5)
        rotated = subprocess.run(["docker", "exec", f"bluegreen-{STACK}-proxy", "rotate-access-log"],
                                 capture_output=True, text=True, check=True)
        time.sleep(1.5)
    assert "rotated at" in rotated.stderr
    assert loop.results and not loop.failures
    expected = {"2xx": before.get("2xx", 0) + len(loop.results)}
    found, _ = wait_for_counts("blue", "stable", expected)
    assert found["2xx"] == expected["2xx"]


def test_the_latency_histogram_holds_every_request_in_its_buckets(outputs):
    buckets = query(f'sum by (le) (bluegreen_request_duration_seconds_bucket{{{selector("blue", "stable")}}})')
    total = counts("blue", "stable")["histogram"]
    assert buckets[("+Inf",)] == total
    values = [buckets[key] for key in sorted(buckets, key=lambda k: float(k[0]))]
    assert values == sorted(values), "cumulative buckets never decrease"
    p99 = query(f'histogram_quantile(0.99, sum by (le) (bluegreen_request_duration_seconds_bucket'
                f'{{{selector("blue", "stable")}}}))')
    assert 0 < next(iter(p99.values())) <= 10


def test_preview_traffic_is_counted_apart_on_the_colour_that_answered(outputs):
    # Only blue runs: the preview URI reaches green, which has no instance (nginx answers 502).
    statuses = {requests.get(PREVIEW, timeout=5).status_code for _ in range(5)}
    assert statuses == {502}
    found, _ = wait_for_counts("green", "preview", {"5xx": 5, "histogram": 5})
    assert found == {"5xx": 5, "histogram": 5}
    assert counts("blue", "preview") == {"histogram": 0.0}


def stable_counts() -> dict[str, dict[str, float]]:
    return {colour: counts(colour, "stable") for colour in ("blue", "green")}


def test_a_flip_under_load_fails_nothing_and_counts_the_colour_that_answered(outputs):
    deployment = DEPLOYMENT[0]
    both = {"blue": {"version": "1.0.0"}, "green": {"version": "2.0.0"}}
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", services(**both)))
    deployment.up()                       # green deployed offline: its gate asks the preview URI
    time.sleep(2 * SCRAPE_S)
    before = stable_counts()
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services",
                                                      services(**both, live="green")))
    with RequestLoop(STABLE, rate=20, keep_alive=True, max_requests=2400, max_seconds=120) as loop:
        deployment.up()
        time.sleep(2)
    assert loop.failures == [], loop.failures[:5]
    served = {colour: sum(1 for r in loop.results if r[2] == colour) for colour in ("blue", "green")}
    assert served["blue"] and served["green"], served
    for colour in ("blue", "green"):
        wait_for_counts(colour, "stable", {"2xx": before[colour].get("2xx", 0) + served[colour]})
    after = stable_counts()
    # The update's own proof of the flip (GET /health on the stable URI) is counted beside the loop.
    extra = {colour: after[colour]["2xx"] - before[colour].get("2xx", 0) - served[colour]
             for colour in served}
    assert all(0 <= n <= 10 for n in extra.values()), extra
    assert all(after[c].get("5xx", 0) == before[c].get("5xx", 0) for c in served)
    FIGURES["flip under 20/s keep-alive: requests per colour (loop)"] = served
    FIGURES["flip: the update's own requests counted beside the loop"] = extra


def test_what_counting_costs_in_memory(outputs):
    for name in ("proxy", "prometheus"):
        container = f"bluegreen-{STACK}-{name}"
        used = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container],
                              capture_output=True, text=True, check=True).stdout.split("/")[0].strip()
        FIGURES[f"{name} memory"] = used
    assert FIGURES["proxy memory"] and FIGURES["prometheus memory"]


def test_a_release_failing_a_fifth_of_its_requests_is_flipped_back_from_real_traffic(outputs):
    # Blue 3.0.0 passes /health (its gate, the flip's proof) but fails every fifth GET / of its
    # users, never the watchdog's probes (which would tolerate half their answers failing anyway:
    # bakeMaxErrorRate 0.5): only the real traffic in Prometheus (99% success by default) can
    # catch it.
    deployment = DEPLOYMENT[0]
    edit_and_commit("flaky", fail_every=5)
    bad = {"blue": {"version": "3.0.0"}, "green": {"version": "2.0.0"}, "bakeTime": "60s",
           "bakeMaxErrorRate": 0.5}
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", services(live="green", **bad)))
    deployment.up()
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", services(live="blue", **bad)))
    with RequestLoop(STABLE, rate=20, max_requests=1200, max_seconds=60) as loop:
        deployment.up()
        record, _ = wait_until(rolled_back, 40, interval_s=0.2, what="the watchdog's roll-back")
        seen = time.monotonic()
        time.sleep(1.5)
    failed = [r for r in loop.results if r[1] == 500]
    # Sent once the roll-back was recorded (and the proxy had half a second to apply the flip).
    after = [r for r in loop.results if r[0] > seen + 0.5]
    assert record["judgedBy"] == "traffic", record
    assert record["reason"].startswith("real traffic on blue: success rate"), record["reason"]
    assert alias() == "green" and after and all(r[1] == 200 and r[2] == "green" for r in after)
    assert all(r[1] in (200, 500) for r in loop.results), loop.failures[:5]
    first_failure = failed[0][0]
    FIGURES["traffic-judged roll-back: first failed request -> last one (s)"] = \
        round(failed[-1][0] - first_failure, 2)
    FIGURES["traffic-judged roll-back: failed requests"] = f"{len(failed)}/{len(loop.results)}"
    FIGURES["traffic-judged roll-back: reason"] = record["reason"]


def rolled_back() -> dict | None:
    response = deployer_consul(STACK).get(f"http://127.0.0.1:{PORTS['consul']}/v1/kv/bluegreen/bake/"
                                          f"{ENV}/vizconfig", params={"raw": "true"}, timeout=3)
    record = response.json() if response.status_code == 200 else {}
    return record if record.get("status") == "rolled-back" else None


def alias() -> str:
    return deployer_consul(STACK).get(f"http://127.0.0.1:{PORTS['consul']}/v1/kv/bluegreen/aliases/"
                                      f"{ENV}/vizconfig", params={"raw": "true"}, timeout=3).text


ROLLOUT = {"steps": [20, 60], "stepTime": "10s"}


def bake_record() -> dict:
    return deployer_consul(STACK).get(f"http://127.0.0.1:{PORTS['consul']}/v1/kv/bluegreen/bake/"
                                      f"{ENV}/vizconfig", params={"raw": "true"}, timeout=3).json()


def split_record() -> dict:
    return deployer_consul(STACK).get(f"http://127.0.0.1:{PORTS['consul']}/v1/kv/bluegreen/splits/"
                                      f"{ENV}/vizconfig", params={"raw": "true"}, timeout=3).json()


def roll_out_blue(version: str, stamp: str, fail_every: int = 0):
    """Blue `version` (built from the repo stamped `stamp`) goes live through the rollout: the
    up writes the rolling record; the watchdog does the rest."""
    edit_and_commit(stamp, fail_every=fail_every)
    deployment = DEPLOYMENT[0]
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", services(
        live="blue", blue={"version": version}, green={"version": "2.0.0"}, rollout=ROLLOUT)))
    deployment.up()
    assert alias() == "green", "a flip with a rollout moved the alias itself"


def test_a_rollout_of_a_release_failing_a_fifth_of_its_requests_aborts_at_its_first_step(outputs):
    with RequestLoop(STABLE, rate=20, max_requests=1200, max_seconds=60) as loop:
        roll_out_blue("3.0.1", "flaky-again", fail_every=5)
        record, _ = wait_until(lambda: (r := bake_record())["status"] != "rolling" and r, 40,
                               interval_s=0.2, what="the rollout to end")
        seen = time.monotonic()
        time.sleep(1.5)
    assert record["status"] == "aborted", record
    assert record["reason"].startswith("step 1 of 2 (20%): real traffic on blue: success rate"), record
    assert split_record()["percent"] == 0 and alias() == "green"
    assert {r[2] for r in loop.results if r[1] == 500} == {"blue"}
    assert all(r[1] == 200 and r[2] == "green" for r in loop.results if r[0] > seen + 0.5)
    FIGURES["aborted rollout: failed requests (only the 20% step's)"] = \
        f"{sum(1 for r in loop.results if r[1] == 500)}/{len(loop.results)}"


def test_a_good_release_walks_its_steps_then_the_watchdog_flips_with_no_failed_request(outputs):
    start = time.monotonic()
    with RequestLoop(STABLE, rate=20, max_requests=2400, max_seconds=120) as loop:
        roll_out_blue("3.0.2", "good-again")
        record, _ = wait_until(lambda: (r := bake_record())["status"] != "rolling" and r, 80,
                               interval_s=0.2, what="the rollout to end")
        time.sleep(1.5)
    assert record["status"] == "baked" and record["judgedBy"] == "traffic", record
    assert alias() == "blue" and split_record()["percent"] == 0
    assert loop.results and not loop.failures, loop.failures[:5]
    shares = [sum(1 for r in loop.results[i:i + 100] if r[2] == "blue")
              for i in range(0, len(loop.results), 100)]
    # Green answered first, then both (the steps), and blue alone at the end.
    assert shares[0] < 50 and all(r[2] == "blue" for r in loop.results[-20:]), shares
    FIGURES["rollout [20, 60] x 10s: up to flipped (s)"] = round(time.monotonic() - start - 1.5, 1)
    FIGURES["rollout: blue answers per 100 requests"] = shares
    FIGURES["rollout: the watchdogs' log of it"] = watchdog_lines("3.0.2")
    DEPLOYMENT[0].up()                     # the stack agrees: nothing flips, nothing is refused
    assert alias() == "blue"


def watchdog_lines(version: str) -> list[str]:
    """What the platform's watchdogs logged about `version` (the rollout's timeline)."""
    lines = []
    for number in (1, 2):
        logs = subprocess.run(["docker", "logs", "-t", f"bluegreen-{STACK}-watchdog-{number}"],
                              capture_output=True, text=True)
        lines += [line for line in (logs.stdout + logs.stderr).splitlines() if f" {version}" in line]
    return sorted(lines)   # each starts with its time (docker logs -t)


def catalogue_entry() -> dict:
    catalogue = requests.get(f"{PROXY}/catalogue.json", timeout=5).json()
    return next(s for s in catalogue["services"] if s["entry"]["service"] == "vizconfig")


def test_the_delivery_metrics_count_the_modules_releases_in_the_catalogue_and_prometheus(outputs):
    # Went live: 1.0.0 (first deploy), 2.0.0, 3.0.0 (rolled back by the watchdog), 3.0.2 (rolled
    # out); 3.0.1's rollout aborted, so it never went live. One failure of four deployments.
    delivery, waited = wait_until(lambda: (d := catalogue_entry().get("delivery")) and d["deployments"] == 4 and d,
                                  30, interval_s=0.5, what="four deployments in the catalogue")
    assert (delivery["failures"], delivery["changeFailureRate"], delivery["deploymentsPerDay"]) == (1, 0.25, 0.571)
    history = {e["version"]: e for e in catalogue_entry()["history"]}
    rolled = history["3.0.0"]
    assert 0 < delivery["timeToRestoreSeconds"] < 120, (delivery, rolled)
    assert all(history[v].get("committedAt") for v in ("1.0.0", "2.0.0", "3.0.0", "3.0.2")), history
    assert "liveAt" not in history["3.0.1"], history["3.0.1"]
    assert 0 < delivery["leadTimeSeconds"] < 3600, delivery
    expected = {"bluegreen_deployments_per_day": 0.571, "bluegreen_change_failure_rate": 0.25,
                "bluegreen_time_to_restore_seconds": delivery["timeToRestoreSeconds"],
                "bluegreen_lead_time_seconds": delivery["leadTimeSeconds"]}
    selector = f'{{environment="{ENV}",service="vizconfig",job="delivery"}}'
    found, scraped = wait_until(lambda: (v := {name: next(iter(query(name + selector).values()), None)
                                               for name in expected}) == expected and v,
                                30, interval_s=0.5, what=f"Prometheus to hold {expected}")
    status = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "status", "vizconfig", "--stack", STACK],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "  delivery: 0.571 deployments/day, lead time " in status.stdout, status.stdout + status.stderr
    assert re.search(r"^    blue  .*[▁-█].* now \d+\.\d/s \| ", status.stdout, re.M), status.stdout
    assert re.search(r"^    green .*[▁-█].* now \d+\.\d/s \| ", status.stdout, re.M), status.stdout
    FIGURES["./bg status"] = status.stdout.splitlines()
    FIGURES["delivery metrics (catalogue.json)"] = delivery
    FIGURES["delivery metrics: history change to catalogue, catalogue to Prometheus (s)"] = \
        [round(waited, 2), round(scraped, 2)]


def test_the_catalogue_page_draws_each_colours_traffic_with_the_flips_and_the_delivery_metrics(outputs):
    # Through the proxy only Prometheus's read-only queries answer, and only to GET.
    start = time.time() - 600
    answer = requests.get(f"{PROXY}/catalogue/api/v1/query_range", timeout=5, params={
        "query": "up", "start": start, "end": start + 600, "step": 60})
    assert answer.status_code == 200 and answer.json()["status"] == "success"
    for method, path in (("POST", "/catalogue/api/v1/query"), ("GET", "/catalogue/api/v1/admin/tsdb/snapshot"),
                         ("POST", "/catalogue/api/v1/admin/tsdb/delete_series"), ("GET", "/catalogue/-/quit"),
                         ("GET", "/catalogue/api/v1/status/config")):
        assert requests.request(method, f"{PROXY}{path}", timeout=5).status_code in (403, 404), (method, path)
    dom = chromium_dom(f"{PROXY}/catalogue/", budget_ms=8000)
    chart = re.search(r'<svg[^>]*data-chart="e2e-measure/vizconfig".*?</svg>', dom, re.S)
    assert chart, dom[-2000:]
    series = dict(re.findall(r'data-series="([^"]+)" data-points="(\d+)"', chart.group(0)))
    assert {"requests/s blue", "requests/s green", "5xx blue", "5xx green"} <= set(series), series
    # 15 s steps since the module's first requests, a few minutes ago.
    assert int(series["requests/s blue"]) > 2 and int(series["requests/s green"]) > 2, series
    flips = re.findall(r'data-flip="(flip|rollback)"', chart.group(0))
    assert flips.count("rollback") >= 2 and flips.count("flip") >= 6, flips   # both panels mark each
    figures = dict(re.findall(r'data-delivery="(\w+)">([^<]+)<', dom))
    assert figures == {"deploymentsPerDay": "0.571", "changeFailureRate": "25 %",
                       "leadTimeSeconds": figures["leadTimeSeconds"],
                       "timeToRestoreSeconds": figures["timeToRestoreSeconds"]}, figures
    screenshot = os.path.join(LOG_DIR, "measure-catalogue.png")
    chromium_screenshot(f"{PROXY}/catalogue/", screenshot, budget_ms=8000)
    FIGURES["catalogue page: series points per colour (requests/s)"] = \
        {c: int(series[f"requests/s {c}"]) for c in ("blue", "green")}
    FIGURES["catalogue page: screenshot"] = os.path.relpath(screenshot, os.path.dirname(LOG_DIR))

