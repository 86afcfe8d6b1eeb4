"""Rollback speed: from `./bg rollback` starting to the stable URI serving the old release, when only
the alias moves (target: 3 s), and how long the whole command takes with its `pulumi up`.

    ./bg bench rollback_benchmark [--runs N] [--keep]

On a stack of its own (bench-rb, ports 28760-28764 on 127.0.0.1) with the example service: 1.0.0
goes live on blue, 2.0.0 on green, then each run rolls back (the two releases alternate as the
"last live" one) while a client polls the stable URI every 20 ms. Prints, per run and as medians:
time to the first answer from the old release, the command's own breakdown (start-up, reading
config and release records, the other colour's checks, the alias write) and the converging
`pulumi up`. Everything it created is destroyed unless --keep."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import requests
from e2e_harness import REPO, Deployment, platform_config, require_environment, wait_until

STACK = "bench-rb"
PORTS = {"consul": 28760, "serf": 28761, "server": 28762, "registry": 28763, "proxy": 28764}
STABLE = f"http://127.0.0.1:{PORTS['proxy']}/{STACK}/vizconfig/"
TARGET_S = 3.0
OUT = os.path.join(REPO, "reports", "benchmark-rollback.json")
STAMP = re.compile(r"^\[\s*([0-9.]+)s\] (.*)$")


def served_version() -> str:
    try:
        return requests.get(STABLE, timeout=1).json().get("version", "")
    except (requests.RequestException, ValueError):
        return ""


def one_rollback(expected: str) -> dict:
    """Runs `./bg rollback` and measures when the stable URI first serves `expected`."""
    seen: dict = {}

    def poll(start: float) -> None:
        while time.monotonic() - start < 60 and "at" not in seen:
            if served_version() == expected:
                seen["at"] = time.monotonic() - start
            time.sleep(0.02)

    start = time.monotonic()
    watcher = threading.Thread(target=poll, args=(start,), daemon=True)
    watcher.start()
    result = subprocess.run([os.path.join(REPO, "bg"), "rollback", "vizconfig", "--stack", STACK],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    total = time.monotonic() - start
    watcher.join(timeout=60)
    if result.returncode != 0 or "at" not in seen:
        sys.exit(f"rollback to {expected} failed:\n{result.stdout}{result.stderr}")
    alias_at = next((float(m.group(1)) for m in map(STAMP.match, result.stdout.splitlines())
                     if m and m.group(2).startswith("alias ")), None)
    return {"served_s": round(seen["at"], 3), "total_s": round(total, 2),
            "alias_written_s": alias_at, "output": result.stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed rollbacks (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the stack afterwards")
    args = parser.parse_args()
    require_environment()
    config = platform_config(PORTS, STACK)
    config["bluegreen:services"] = {"vizconfig": {
        "manifest": "services/vizconfig/service.yaml", "live": "blue", "blue": {"version": "1.0.0"}}}
    deployment = Deployment(STACK, config)
    runs = []
    try:
        deployment.up()
        deployment.update_config(lambda c: c["bluegreen:services"]["vizconfig"].update(
            green={"version": "2.0.0"}, live="green"))
        deployment.up()
        wait_until(lambda: served_version() == "2.0.0", 15, what="2.0.0 live")
        expected = "1.0.0"
        for index in range(1, args.runs + 1):
            run = one_rollback(expected)
            runs.append(run)
            print(f"run {index}: {expected} served after {run['served_s']:.2f}s "
                  f"(alias written at {run['alias_written_s']}s); command with its pulumi up "
                  f"{run['total_s']:.1f}s")
            expected = "2.0.0" if expected == "1.0.0" else "1.0.0"
    finally:
        if not args.keep:
            deployment.remove()
    served = statistics.median(r["served_s"] for r in runs)
    alias = statistics.median(r["alias_written_s"] for r in runs)
    total = statistics.median(r["total_s"] for r in runs)
    print(f"\nmedian over {len(runs)} rollbacks (alias only):")
    print(f"  command start -> alias written         {alias:6.2f}s")
    print(f"  alias written -> old release served    {served - alias:6.2f}s")
    print(f"  command start -> old release served    {served:6.2f}s   "
          f"{'within' if served <= TARGET_S else 'OVER'} the {TARGET_S:.0f}s target "
          f"({served / TARGET_S:.0%} of it)")
    print(f"  whole command, with the converging up  {total:6.1f}s")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as handle:
        json.dump({"target_s": TARGET_S, "median_served_s": served, "median_alias_s": alias,
                   "median_total_s": total,
                   "runs": [{k: v for k, v in r.items() if k != "output"} for r in runs]},
                  handle, indent=2)
    print(f"figures: {os.path.relpath(OUT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
