"""Splits: the share of fresh clients the proxy sends to the offline colour, how long a new
percentage takes to show, the requests that fail meanwhile and the reloads it costs. Not a test:
run it, read the figures.

    ./bg bench split_benchmark [--clients 600] [--changes 20] [--keep]

On a stack of its own (bench-split; ports 28780-28784 on 127.0.0.1): the platform and the example
service with both colours running. The split record is written straight to Consul KV (what
`./bg split` writes once the offline colour's checks pass), then:

1. shares: for 5, 20 and 50%, `--clients` fresh clients (no cookie, one request each): the share
   that the offline colour answered, against the target (within 5 points?);
2. time to show: clients whose cookie falls in the first 5 buckets (found at 5%); `--changes` times
   the record goes 0% -> 5% and back, each timed from the write until such a client gets the new
   colour, while a keep-alive and a fresh-connection client each send `--rate` requests/s.

Prints the shares, p50/p99/min/max time to show, failed requests and nginx reloads; JSON to
reports/benchmark-split.json. Bounded by --max-seconds; destroyed at the end unless --keep."""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import math
import os
import signal
import statistics
import subprocess
import sys
import time

from e2e_harness import (REPO, Deployment, RequestLoop, platform_config, require_environment,
                         time_bound, write_report)

from bluegreen.components.consul import api as consul_api
from bluegreen.components.model.split import Split, split_value
from bluegreen.components.naming import SPLIT_COOKIE, split_key, stable_path

STACK = ENV = "bench-split"
PORTS = {"consul": 28780, "serf": 28781, "server": 28782, "registry": 28783, "proxy": 28784}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
HOST, PATH = f"127.0.0.1:{PORTS['proxy']}", stable_path(ENV, "vizconfig")
PROXY_CONTAINER = f"bluegreen-{STACK}-proxy"
PROBE_TIMEOUT_S = 5.0
OUT = os.path.join(REPO, "reports", "benchmark-split.json")


def service_config() -> dict:
    return {"vizconfig": {
        "manifest": "services/vizconfig/service.yaml", "live": "blue", "gateTimeout": 15,
        "blue": {"version": "1.0.0"}, "green": {"version": "1.0.0", "env": {"DEPLOY": "1"}}}}


def answer(cookie: str | None = None) -> tuple[str, str | None]:
    """(the colour the proxy answered from, the cookie it set) for one request, fresh connection."""
    connection = http.client.HTTPConnection(HOST, timeout=3)
    try:
        headers = {"Connection": "close", **({"Cookie": f"{SPLIT_COOKIE}={cookie}"} if cookie else {})}
        connection.request("GET", PATH, headers=headers)
        response = connection.getresponse()
        response.read()
        set_cookie = response.getheader("Set-Cookie") or ""
        value = set_cookie.split(";", 1)[0].split("=", 1)[1] if set_cookie.startswith(SPLIT_COOKIE) else None
        return response.getheader("X-Bluegreen-Colour") or "", value
    finally:
        connection.close()


def set_share(percent: int, token: str) -> float:
    """Writes the split record; returns when it was written (monotonic)."""
    consul_api.kv_put(CONSUL, split_key(ENV, "vizconfig"), split_value(Split(percent), "blue"), token)
    return time.monotonic()


def fresh_clients(count: int) -> list[tuple[str, str | None]]:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: answer(), range(count)))


def shares(clients: int, token: str) -> dict:
    measured = {}
    for percent in (5, 20, 50):
        set_share(percent, token)
        time.sleep(0.5)
        colours = [colour for colour, _ in fresh_clients(clients)]
        measured[percent] = round(100.0 * colours.count("green") / clients, 1)
        print(f"   {percent:>3}%: {measured[percent]:5.1f}% of {clients} fresh clients on green", flush=True)
    return measured


def green_cookies(token: str, wanted: int = 5) -> list[str]:
    """Cookies of clients in the first 5 buckets: those green answers at 5%."""
    set_share(5, token)
    time.sleep(0.5)
    found = [cookie for colour, cookie in fresh_clients(400) if colour == "green" and cookie]
    if len(found) < wanted:
        raise RuntimeError(f"only {len(found)} of 400 fresh clients got green at 5%")
    return found[:wanted]


def shows(cookie: str, colour: str, written: float) -> float:
    while time.monotonic() - written < PROBE_TIMEOUT_S:
        if answer(cookie)[0] == colour:
            return time.monotonic() - written
        time.sleep(0.001)
    raise RuntimeError(f"a client of bucket 0-4 did not get {colour} within {PROBE_TIMEOUT_S}s")


def reloads() -> int:
    logs = subprocess.run(["docker", "logs", PROXY_CONTAINER], capture_output=True, text=True)
    return sum("reloaded" in line for line in (logs.stdout + logs.stderr).splitlines())


def changes(count: int, rate: float, token: str, cookies: list[str]) -> dict:
    set_share(0, token)
    time.sleep(0.5)
    times, before = [], reloads()
    with RequestLoop(f"http://{HOST}{PATH}", rate=rate, max_seconds=count * 4 + 30, keep_alive=True,
                     retries=0) as kept, \
            RequestLoop(f"http://{HOST}{PATH}", rate=rate, max_seconds=count * 4 + 30) as fresh:
        for index in range(count):
            percent, colour = (5, "green") if index % 2 == 0 else (0, "blue")
            times.append(shows(cookies[index % len(cookies)], colour, set_share(percent, token)))
            time.sleep(0.3)
    ms = sorted(t * 1000 for t in times)
    return {"changes": count,
            "show_ms": {"p50": round(statistics.median(ms), 1),
                        "p99": round(ms[math.ceil(0.99 * len(ms)) - 1], 1),
                        "min": round(ms[0], 1), "max": round(ms[-1], 1)},
            "requests": len(kept.results) + len(fresh.results),
            "failed": len(kept.failures) + len(fresh.failures),
            "reloads": reloads() - before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=600)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s per client loop")
    parser.add_argument("--keep", action="store_true", help="keep the stack for the next run")
    parser.add_argument("--max-seconds", type=int, default=900)
    args = parser.parse_args()
    if not 100 <= args.clients <= 5000 or not 2 <= args.changes <= 200 or not 1 <= args.rate <= 200:
        parser.error("allowed: --clients 100..5000, --changes 2..200, --rate 1..200")
    require_environment()
    time_bound(args.max_seconds)
    config = platform_config(PORTS, ENV)
    config["bluegreen:services"] = service_config()
    deployment = Deployment(STACK, config)
    try:
        print(f"-- deploying {STACK} (platform, vizconfig blue and green)", flush=True)
        deployment.up()
        token = deployment.deployer_token()
        print(f"-- shares of {args.clients} fresh clients", flush=True)
        result = {"shares": shares(args.clients, token)}
        print(f"-- {args.changes} changes 0% <-> 5% under load", flush=True)
        result.update(changes(args.changes, args.rate, token, green_cookies(token)))
    finally:
        signal.alarm(0)
        if not args.keep:
            deployment.remove()
    show(result)
    write_report(OUT, result)
    return 0


def show(result: dict) -> None:
    print("\nshare of fresh clients on the offline colour (target: within 5 points)")
    for percent, measured in result["shares"].items():
        verdict = "within" if abs(measured - percent) <= 5 else "OUTSIDE"
        print(f"  {percent:>3}% -> {measured:5.1f}%  {verdict}")
    s = result["show_ms"]
    print(f"a new percentage shows in p50 {s['p50']} ms, p99 {s['p99']} ms (min {s['min']}, max "
          f"{s['max']}) over {result['changes']} changes; failed {result['failed']}/"
          f"{result['requests']} requests; nginx reloads {result['reloads']}")
    verdict = "meets" if s["p50"] <= 50 else "MISSES"
    print(f"this tree {verdict} the target (a new percentage within 50 ms)")


if __name__ == "__main__":
    sys.exit(main())
