"""What the policy pack costs: a no-change `pulumi up` with the pack (as ./bg and the delivery
commands run it) and without, alternated, with medians and the median of adjacent pairs.

    ./bg bench policy_benchmark [--runs N] [--keep]

On a stack of its own (bench-policy, ports 29100-29112 on 127.0.0.1): the platform on two hosts
and two services (vizconfig with its linked database, frontend) on both. After the deploy and a
settling up, each round runs one up with the pack and one without, the order alternating, and
checks that neither changed anything. Everything it created is destroyed unless --keep."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from e2e_harness import (REPO, Deployment, platform_config, require_environment, time_bound,
                         write_report)

STACK = "bench-policy"
PORTS = {"consul": 29100, "serf": 29101, "server": 29102, "registry": 29103, "proxy": 29104,
         "host2_consul": 29110, "host2_serf": 29111, "host2_server": 29112}
PACK = os.path.join(REPO, "policies")
CHANGES = {"create", "update", "delete", "replace"}
OUT = os.path.join(REPO, "reports", "benchmark-policy.json")


def services() -> dict:
    both = {"hosts": ["local", "host2"], "live": "blue", "blue": {"version": "1.0.0"}}
    return {"vizconfig": {"manifest": "services/vizconfig/service.yaml", **both},
            "frontend": {"manifest": "services/frontend/service.yaml", **both}}


def timed_up(deployment: Deployment, with_pack: bool) -> float:
    """One no-change `pulumi up`, in seconds; fails if it changed anything."""
    options = {"policy_packs": [PACK]} if with_pack else {}
    with open(deployment.log, "a", encoding="utf-8") as out:
        out.write(f"\n===== up {'with' if with_pack else 'without'} the pack {time.strftime('%H:%M:%S')}\n")
        start = time.monotonic()
        result = deployment.stack.up(color="never", on_output=lambda line: out.write(line + "\n"),
                                     **options)
        elapsed = time.monotonic() - start
    changed = CHANGES & set(result.summary.resource_changes or {})
    if changed:
        sys.exit(f"a no-change up changed {sorted(changed)}: {result.summary.resource_changes}")
    return elapsed


def rounds(deployment: Deployment, runs: int) -> dict[str, list[float]]:
    """`runs` rounds of one up with the pack and one without; odd rounds start without it."""
    times: dict[str, list[float]] = {"with": [], "without": []}
    for index in range(runs):
        order = ("with", "without") if index % 2 == 0 else ("without", "with")
        for label in order:
            times[label].append(round(timed_up(deployment, label == "with"), 2))
        print(f"round {index + 1}: with the pack {times['with'][-1]:.2f}s, "
              f"without {times['without'][-1]:.2f}s", flush=True)
    return times


def summary(times: dict[str, list[float]]) -> dict:
    with_pack, without = statistics.median(times["with"]), statistics.median(times["without"])
    paired = statistics.median(w - o for w, o in zip(times["with"], times["without"]))
    print(f"\nmedian over {len(times['with'])} rounds: with the pack {with_pack:.2f}s, "
          f"without {without:.2f}s: {with_pack - without:+.2f}s ({with_pack / without - 1:+.1%}); "
          f"median of the rounds' differences {paired:+.2f}s")
    return {"runs": times, "median_with_s": with_pack, "median_without_s": without,
            "median_difference_s": round(with_pack - without, 2), "median_paired_difference_s":
            round(paired, 2), "relative": round(with_pack / without - 1, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the stack afterwards")
    args = parser.parse_args()
    require_environment()
    time_bound(900 + 60 * args.runs)
    config = platform_config(PORTS, STACK, second_host=True)
    config["bluegreen:services"] = services()
    deployment = Deployment(STACK, config)
    try:
        deployment.up()
        deployment.up()   # turns the first deploy's builds into releases: later ups only read
        figures = summary(rounds(deployment, args.runs))
    finally:
        if not args.keep:
            deployment.remove()
    write_report(OUT, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
