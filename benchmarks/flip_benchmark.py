"""The flip: alias write -> the proxy serving the new colour, the requests that fail meanwhile, and
how many nginx reloads a flip and a deploy cost. Not a test: run it, read the figures.

    ./bg bench flip_benchmark [--baseline REF] [--keep]

On a stack of its own (bench-flip; ports 28770-28774 on 127.0.0.1): the platform and the example
service with both colours running, `--replicas` instances each. Per proxy image (this tree's, and
with --baseline the one images/proxy at git REF builds, measured in the same run):

1. a deploy of several instances: the offline colour's containers are replaced (a change of its
   environment) by `pulumi up`; the proxy's reloads are counted while it runs;
2. `--flips` flips: the alias written straight to Consul KV (what the Alias resource writes), then
   a probe on fresh connections until the new colour answers (the switch time), while a keep-alive
   client (no retries: a request on a connection closed under it counts as failed) and a
   fresh-connection client each send `--rate` requests/s (failed requests).

Prints p50/p99 (nearest rank)/min/max switch time, failed requests and reloads, with the ratios to
the baseline; JSON to reports/benchmark-flip.json. Everything is bounded (`--max-seconds` for the
whole run) and destroyed at the end unless --keep is given."""

from __future__ import annotations

import argparse
import http.client
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from e2e_harness import (REPO, Deployment, RequestLoop, platform_config, require_environment,
                         time_bound, write_report)

from bluegreen.components.consul import api as consul_api
from bluegreen.components.naming import alias_key, stable_path

STACK = ENV = "bench-flip"
PORTS = {"consul": 28770, "serf": 28771, "server": 28772, "registry": 28773, "proxy": 28774}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
STABLE_HOST, STABLE_PATH = f"127.0.0.1:{PORTS['proxy']}", stable_path(ENV, "vizconfig")
STABLE = f"http://{STABLE_HOST}{STABLE_PATH}"
PROXY_CONTAINER = f"bluegreen-{STACK}-proxy"
BASELINE_IMAGE = "bluegreen-bench/proxy:baseline"
APPLIED = re.compile(r"apply-(config|aliases):.*applied")
PROBE_TIMEOUT_S = 5.0
SETTLE_S = 0.6
OUT = os.path.join(REPO, "reports", "benchmark-flip.json")


def service_config(replicas: int, deploy: int = 0) -> dict:
    """Both colours on one version (one build); green's DEPLOY variable makes a new deploy."""
    return {"vizconfig": {
        "manifest": "services/vizconfig/service.yaml", "live": "blue", "replicas": replicas,
        "gateTimeout": 15, "blue": {"version": "1.0.0"},
        "green": {"version": "1.0.0", "env": {"DEPLOY": str(deploy)}}}}


def reloads() -> int:
    """Reloads the proxy applied so far (apply-config logs one line per reload)."""
    logs = subprocess.run(["docker", "logs", PROXY_CONTAINER], capture_output=True, text=True)
    return len(APPLIED.findall(logs.stdout + logs.stderr))


def serving(colour: str) -> bool:
    """One request on a fresh connection (plain http.client: the probe's own cost stays small)."""
    connection = http.client.HTTPConnection(STABLE_HOST, timeout=2)
    try:
        connection.request("GET", STABLE_PATH, headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
        return response.status == 200 and response.getheader("X-Service-Colour") == colour
    finally:
        connection.close()


def probe(colour: str, written: float) -> float:
    """Seconds from `written` until a fresh connection is answered by `colour`."""
    while time.monotonic() - written < PROBE_TIMEOUT_S:
        try:
            if serving(colour):
                return time.monotonic() - written
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"{STABLE} did not serve {colour} within {PROBE_TIMEOUT_S}s of the alias write")


def seen(loop: RequestLoop, colour: str, after: float) -> bool:
    return any(sent >= after and status == 200 and served == colour
               for sent, status, served, _ in list(loop.results))


def flips(count: int, rate: float, token: str) -> dict:
    """`count` alias writes alternating green/blue under client load (ends where it began), with
    the deployer's Consul `token`."""
    key, colour = alias_key(ENV, "vizconfig"), "blue"
    switches = []
    before = reloads()
    bound = count * 5 + 30
    with RequestLoop(STABLE, rate=rate, max_seconds=bound, keep_alive=True, retries=0) as kept, \
            RequestLoop(STABLE, rate=rate, max_seconds=bound) as fresh:
        time.sleep(1)
        for _ in range(count):
            colour = "green" if colour == "blue" else "blue"
            written = time.monotonic()
            consul_api.kv_put(CONSUL, key, colour, token)
            switches.append(probe(colour, written))
            # Both clients move too before the next flip.
            deadline = time.monotonic() + PROBE_TIMEOUT_S
            while not (seen(kept, colour, written) and seen(fresh, colour, written)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"a client loop never saw {colour} after a flip")
                time.sleep(0.01)
            time.sleep(SETTLE_S)
    if colour != "blue":
        consul_api.kv_put(CONSUL, key, "blue", token)
    ms = sorted(s * 1000 for s in switches)
    return {
        "flips": count,
        "switch_ms": {"p50": round(statistics.median(ms), 1),
                      "p99": round(ms[math.ceil(0.99 * len(ms)) - 1], 1),
                      "min": round(ms[0], 1), "max": round(ms[-1], 1),
                      "all": [round(m, 1) for m in ms]},
        "requests": {"keep_alive": len(kept.results), "fresh": len(fresh.results)},
        "failed": {"keep_alive": len(kept.failures), "fresh": len(fresh.failures),
                   "examples": (kept.failures + fresh.failures)[:5]},
        "reloads": reloads() - before,
    }


def deploy_reloads(deployment: Deployment, replicas: int, number: int, rate: float) -> dict:
    """Reloads while `up` replaces the offline colour's `replicas` containers (and 2 s after)."""
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", service_config(replicas, number)))
    before = reloads()
    with RequestLoop(STABLE, rate=rate, max_seconds=600, keep_alive=True, retries=0) as kept, \
            RequestLoop(STABLE, rate=rate, max_seconds=600) as fresh:
        start = time.monotonic()
        deployment.up()
        seconds = time.monotonic() - start
        time.sleep(2)
    return {"instances": replicas, "up_s": round(seconds, 1), "reloads": reloads() - before,
            "requests": len(kept.results) + len(fresh.results),
            "failed": {"keep_alive": len(kept.failures), "fresh": len(fresh.failures)}}


def use_proxy(deployment: Deployment, image: str) -> None:
    deployment.update_config(lambda c: c["bluegreen:platform"]["proxy"].__setitem__("image", image))
    deployment.up()
    deadline = time.monotonic() + 30
    while not serving("blue"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the proxy {image} does not serve blue at {STABLE}")
        time.sleep(0.2)


def build_baseline(ref: str) -> str:
    """images/proxy as of git `ref`, built like ./bg builds the proxy image."""
    cache = os.environ.get("BLUEGREEN_CACHE", os.path.expanduser("~/.cache/bluegreen"))
    base = os.environ.get("BLUEGREEN_BASE_IMAGE", "bluegreen/base:bookworm")
    with tempfile.TemporaryDirectory() as context:
        archive = subprocess.run(["git", "-C", REPO, "archive", ref, "images/proxy"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", context, "--strip-components=2"], input=archive, check=True)
        subprocess.run(["cp", os.path.realpath(os.path.join(cache, "bin", "consul-template")), context],
                       check=True)
        subprocess.run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t",
                        BASELINE_IMAGE, context], check=True, capture_output=True)
    return BASELINE_IMAGE


def measure(label: str, deployment: Deployment, args, deploy_number: int) -> dict:
    print(f"-- {label}: a deploy of {args.replicas} instances, then {args.flips} flips", flush=True)
    deploy = deploy_reloads(deployment, args.replicas, deploy_number, args.rate)
    flipped = flips(args.flips, args.rate, deployment.deployer_token())
    return {"label": label, "deploy": deploy, **flipped}


def show(results: list[dict]) -> None:
    print(f"\nalias write -> proxy serves the new colour, {results[0]['flips']} flips; failed: "
          "keep-alive + fresh-connection clients, during the flips and during the deploy")
    print(f"{'proxy':<28} {'p50 ms':>7} {'p99 ms':>7} {'min ms':>7} {'max ms':>7} "
          f"{'failed: flips':>14} {'deploy':>10} {'reloads: flips':>15} {'deploy of N':>12}")
    for r in results:
        s, deploy = r["switch_ms"], r["deploy"]
        failed = r["failed"]["keep_alive"] + r["failed"]["fresh"]
        flips_failed = f"{failed}/{sum(r['requests'].values())}"
        deploy_failed = f"{sum(deploy['failed'].values())}/{deploy['requests']}"
        print(f"{r['label']:<28} {s['p50']:7.1f} {s['p99']:7.1f} {s['min']:7.1f} {s['max']:7.1f} "
              f"{flips_failed:>14} {deploy_failed:>10} {r['reloads']:>15} "
              f"{str(deploy['reloads']) + ' (N=' + str(deploy['instances']) + ')':>12}")
    if len(results) == 2:
        base, new = results
        print(f"{'ratio baseline / this tree':<28} "
              + " ".join(f"{base['switch_ms'][k] / max(new['switch_ms'][k], 0.1):6.1f}x"
                         for k in ("p50", "p99", "min", "max")))
    new = results[-1]
    verdict = "meets" if new["switch_ms"]["p50"] <= 50 and new["switch_ms"]["p99"] <= 150 else "MISSES"
    print(f"this tree {verdict} the target (p50 <= 50 ms, p99 <= 150 ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s per client loop")
    parser.add_argument("--replicas", type=int, default=4, help="instances per colour")
    parser.add_argument("--baseline", metavar="REF", help="also measure images/proxy at this git ref")
    parser.add_argument("--keep", action="store_true", help="keep the stack for the next run")
    parser.add_argument("--max-seconds", type=int, default=1500)
    args = parser.parse_args()
    if not 1 <= args.flips <= 200 or not 1 <= args.rate <= 200 or not 1 <= args.replicas <= 8:
        parser.error("allowed: --flips 1..200, --rate 1..200, --replicas 1..8")
    require_environment()
    time_bound(args.max_seconds)
    config = platform_config(PORTS, ENV)
    config["bluegreen:services"] = service_config(args.replicas)
    candidate = config["bluegreen:platform"]["proxy"]["image"]
    deployment = Deployment(STACK, config)
    results = []
    try:
        print(f"-- deploying {STACK} (platform, vizconfig blue and green x{args.replicas})", flush=True)
        deployment.up()
        if args.baseline:
            use_proxy(deployment, build_baseline(args.baseline))
            results.append(measure(f"baseline ({args.baseline})", deployment, args, 1))
            use_proxy(deployment, candidate)
        results.append(measure("this tree", deployment, args, 2))
    finally:
        signal.alarm(0)
        if not args.keep:
            deployment.remove()
        if args.baseline:
            subprocess.run(["docker", "rmi", "-f", BASELINE_IMAGE], capture_output=True)
    show(results)
    write_report(OUT, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
