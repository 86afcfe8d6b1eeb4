"""Rollback speed, both paths: from `./bg rollback` starting to the stable URI serving the old
release when only the alias moves (target: 1 s) and when the release is deployed by digest to the
offline colour (target: 20 s), and how long each whole command takes with its `pulumi up`.

    ./bg bench rollback_benchmark [--runs N] [--keep]

On a stack of its own (bench-rb, ports 28760-28764 on 127.0.0.1) with the example service: 1.0.0
goes live on blue, 2.0.0 on green; each alias-only run rolls back (the two releases alternate as
the "last live" one). Then 3.0.0 goes live on blue, and each redeploy run rolls back `--to` the one
release of the three that neither colour runs. A client polls the stable URI every 20 ms. Prints,
per run and as medians: time to the first answer from the old release, the command's breakdown
(to the alias write, or to the start of its `pulumi up`) and the whole command. Everything it
created is destroyed unless --keep."""

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
import yaml
from e2e_harness import REPO, Deployment, platform_config, require_environment, wait_until, write_report

STACK = "bench-rb"
PORTS = {"consul": 28760, "serf": 28761, "server": 28762, "registry": 28763, "proxy": 28764}
STABLE = f"http://127.0.0.1:{PORTS['proxy']}/{STACK}/vizconfig/"
TARGETS_S = {"alias": 1.0, "redeploy": 20.0}
OUT = os.path.join(REPO, "reports", "benchmark-rollback.json")
STAMP = re.compile(r"^\[\s*([0-9.]+)s\] (.*)$")


def served_version() -> str:
    try:
        return requests.get(STABLE, timeout=1).json().get("version", "")
    except (requests.RequestException, ValueError):
        return ""


def one_rollback(expected: str, *to: str) -> dict:
    """Runs `./bg rollback [--to V]` and measures when the stable URI first serves `expected`."""
    seen: dict = {}

    def poll(start: float) -> None:
        while time.monotonic() - start < 120 and "at" not in seen:
            if served_version() == expected:
                seen["at"] = time.monotonic() - start
            time.sleep(0.02)

    start = time.monotonic()
    watcher = threading.Thread(target=poll, args=(start,), daemon=True)
    watcher.start()
    result = subprocess.run([os.path.join(REPO, "bg"), "rollback", "vizconfig", "--stack", STACK,
                             *(("--to", to[0]) if to else ())],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    total = time.monotonic() - start
    watcher.join(timeout=120)
    if result.returncode != 0 or "at" not in seen:
        sys.exit(f"rollback to {expected} failed:\n{result.stdout}{result.stderr}")
    # The last step before the move: the alias write, or the record before the converging up.
    marks = [(float(m.group(1)), m.group(2)) for m in map(STAMP.match, result.stdout.splitlines()) if m]
    moved_at = next((at for at, text in marks if text.startswith(("alias ", "recorded live:"))), None)
    return {"served_s": round(seen["at"], 3), "total_s": round(total, 2),
            "moved_s": moved_at, "output": result.stdout}


def timed_runs(label: str, runs: int, next_target) -> list[dict]:
    """`runs` rollbacks; `next_target()` gives (expected version, rollback args) for each."""
    measured = []
    for index in range(1, runs + 1):
        expected, to = next_target()
        run = one_rollback(expected, *to)
        measured.append(run)
        print(f"{label} run {index}: {expected} served after {run['served_s']:.2f}s "
              f"(moved at {run['moved_s']}s); command with its pulumi up {run['total_s']:.1f}s")
    return measured


def summary(label: str, runs: list[dict], step: str) -> dict:
    served = statistics.median(r["served_s"] for r in runs)
    moved = statistics.median(r["moved_s"] for r in runs)
    total = statistics.median(r["total_s"] for r in runs)
    target = TARGETS_S[label]
    print(f"\nmedian over {len(runs)} rollbacks ({label}):")
    print(f"  command start -> {step:<22} {moved:6.2f}s")
    print(f"  {step} -> old release served {served - moved:6.2f}s")
    print(f"  command start -> old release served    {served:6.2f}s   "
          f"{'within' if served <= target else 'OVER'} the {target:.0f}s target "
          f"({served / target:.0%} of it)")
    print(f"  whole command, with the converging up  {total:6.1f}s")
    return {"target_s": target, "median_served_s": served, "median_moved_s": moved,
            "median_total_s": total,
            "runs": [{k: v for k, v in r.items() if k != "output"} for r in runs]}


def served_colours() -> dict[str, str]:
    state = json.loads(subprocess.run(
        [os.path.join(REPO, "bg"), "pulumi", "stack", "output", "services", "--json", "--stack",
         STACK], cwd=REPO, capture_output=True, text=True, check=True).stdout)
    return {colour: entry["version"] for colour, entry in state["vizconfig"]["images"].items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed rollbacks per path (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the stack afterwards")
    args = parser.parse_args()
    require_environment()
    config = platform_config(PORTS, STACK)
    config["bluegreen:services"] = {"vizconfig": {
        "manifest": "services/vizconfig/service.yaml", "live": "blue", "blue": {"version": "1.0.0"}}}
    deployment = Deployment(STACK, config)
    figures = {}
    try:
        deployment.up()
        deployment.update_config(lambda c: c["bluegreen:services"]["vizconfig"].update(
            green={"version": "2.0.0"}, live="green"))
        deployment.up()
        wait_until(lambda: served_version() == "2.0.0", 15, what="2.0.0 live")
        alternate = iter(["1.0.0", "2.0.0"] * args.runs)
        figures["alias"] = summary("alias", timed_runs(
            "alias-only", args.runs, lambda: (next(alternate), ())), "alias written")
        with open(deployment.path, encoding="utf-8") as handle:   # rollback wrote the file
            deployment.config = yaml.safe_load(handle)["config"]
        offline = "green" if served_version() == "1.0.0" else "blue"
        deployment.update_config(lambda c: c["bluegreen:services"]["vizconfig"].update(
            {offline: {"version": "3.0.0"}, "live": offline}))
        deployment.up()
        wait_until(lambda: served_version() == "3.0.0", 15, what="3.0.0 live")

        def absent() -> tuple[str, tuple[str, ...]]:
            version = ({"1.0.0", "2.0.0", "3.0.0"} - set(served_colours().values())).pop()
            return version, ("--to", version)

        figures["redeploy"] = summary("redeploy", timed_runs("redeploy", args.runs, absent),
                                      "its pulumi up starts")
    finally:
        if not args.keep:
            deployment.remove()
    write_report(OUT, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
