"""Flips on the lab: how long a blue/green flip takes when the instances are spread over hosts
reached over ssh://, and whether any request fails, against the same flips on one lab host.
Not a test: run it, read the figures.

    ./bg bench lab_flip_benchmark [--flips N] [--keep]

On stacks of its own, wholly on the lab (bench-lab-platform, bench-lab; Consul on port 29700 of
every lab host, the registry and the proxy on the first host's lab address, ports 29705 and
29780), with both colours
running: each flip is a `live` change and `pulumi up`, under a client loop through the proxy
(20 requests/s). Per flip: the update's wall time, the time from its start until the proxy serves
the new colour, and the failed requests. First with the service on every lab host but the last,
then on the first only. Everything is destroyed at the end unless --keep is given. Figures go to
stdout and to reports/benchmark-lab-flip.json."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from e2e_harness import (Deployment, RequestLoop, get_json, lab, lab_hosts, lab_platform_config,
                         require_environment, wait_until)

PLATFORM, STACK = "bench-lab-platform", "bench-lab"
PORTS = {"consul": 29700, "serf": 29701, "server": 29702, "registry": 29705, "proxy": 29780}
STABLE = ""  # the proxy on the first lab host, known once the lab answers
OUT = os.path.join(REPO, "reports", "benchmark-lab-flip.json")


def service(hosts: list[str], live: str) -> dict:
    return {"vizconfig": {"manifest": "services/vizconfig/service.yaml", "hosts": hosts,
                          "live": live, "blue": {"version": "1.0.0"}, "green": {"version": "1.0.1"},
                          "gateTimeout": 60}}


def flip(deployment: Deployment, hosts: list[str], to: str) -> dict:
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", service(hosts, to)))
    with RequestLoop(STABLE, rate=20, max_requests=2000, max_seconds=120) as client:
        time.sleep(0.5)
        start = time.monotonic()
        deployment.up()
        took = time.monotonic() - start
        wait_until(lambda: get_json(STABLE)["colour"] == to, 10, interval_s=0.05, what=f"{to} served")
        time.sleep(0.5)
    switched = next((r[0] - start for r in client.results if r[0] >= start and r[2] == to), None)
    return {"up_s": round(took, 2), "serving_new_colour_after_s": round(switched, 2),
            "requests": len(client.results), "failed": len(client.failures)}


def series(deployment: Deployment, hosts: list[str], flips: int) -> list[dict]:
    deployment.update_config(lambda c: c.__setitem__("bluegreen:services", service(hosts, "blue")))
    deployment.up()  # both colours on these hosts, blue live
    results = []
    for number in range(flips):
        to = "green" if number % 2 == 0 else "blue"
        results.append(flip(deployment, hosts, to))
        print(f"    {len(hosts)} host(s), flip {number + 1} to {to}: {results[-1]}", flush=True)
    return results


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flips", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    require_environment()
    lab("up")
    hosts = lab_hosts(PORTS)
    names = list(hosts)
    global STABLE
    STABLE = f"http://{hosts[names[0]]['address']}:{PORTS['proxy']}/{STACK}/vizconfig/"
    platform = Deployment(PLATFORM, lab_platform_config(PORTS, hosts, (STACK,)))
    deployment = None
    try:
        platform.up()
        deployment = Deployment(STACK, {
            "bluegreen:environment": STACK,
            "bluegreen:platformStack": f"organization/bluegreen/{PLATFORM}",
            "bluegreen:buildHost": names[0],
            "bluegreen:baseImage": os.environ.get("BLUEGREEN_BASE_IMAGE", "bluegreen/base:bookworm"),
            "bluegreen:hosts": {n: hosts[n] for n in names},
            "bluegreen:services": service(names[:-1], "blue"),
        })
        spread = series(deployment, names[:-1], args.flips)
        single = series(deployment, names[:1], args.flips)
    finally:
        if not args.keep:
            if deployment is not None:
                deployment.remove()
            platform.remove()
    figures = {
        "hosts_spread": names[:-1], "flips_each": args.flips,
        "spread": spread, "single": single,
        "median_up_s": {"spread": median(spread, "up_s"), "single": median(single, "up_s")},
        "median_serving_after_s": {"spread": median(spread, "serving_new_colour_after_s"),
                                   "single": median(single, "serving_new_colour_after_s")},
        "failed_requests": {"spread": sum(r["failed"] for r in spread),
                            "single": sum(r["failed"] for r in single)},
    }
    figures["ratio_spread_to_single_up"] = round(figures["median_up_s"]["spread"] / figures["median_up_s"]["single"], 2)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as handle:
        json.dump(figures, handle, indent=2)
    print(f"\n{'':<34}{len(names) - 1} hosts{'':>6}1 host{'':>6}ratio")
    for label, key in (("median flip (pulumi up), s", "median_up_s"),
                       ("median until new colour served, s", "median_serving_after_s")):
        spread_v, single_v = figures[key]["spread"], figures[key]["single"]
        print(f"{label:<34}{spread_v:>7.2f}{single_v:>12.2f}{spread_v / single_v:>11.2f}")
    print(f"{'failed requests':<34}{figures['failed_requests']['spread']:>7}"
          f"{figures['failed_requests']['single']:>12}")
    print(f"figures: {os.path.relpath(OUT, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
