"""Commit -> production for the example service, with warm caches: how long `./bg pipeline` takes
and where the time goes, against the 3-minute target. Not a test: run it, read the figures.

    ./bg bench pipeline_benchmark [--runs N] [--against REF] [--keep]

On stacks of its own (bench-pipe-platform, -int, -prod; ports 28750-28754 on 127.0.0.1), with a
copy of services/vizconfig as the service repo: two warm-up runs (a first deploy, then a
blue/green one) fill the build cache, the registry and both colours; then each timed run is a
commit (a source change in the copy) followed by the pipeline, as a user runs it. Everything it
created is destroyed at the end unless --keep is given. Figures go to stdout and to
reports/benchmark-pipeline.json.

--against REF (a commit, tag or branch) times that commit's pipeline too, in turn with this
tree's (this, REF, this, REF...), on the same stacks: each run is a commit and a pipeline, and the
ratio this tree / REF is taken pair by pair, so a machine that speeds up or slows down during the
run moves both sides alike. REF's files come from `git archive` into a temporary folder that
shares this tree's stack files and virtualenv."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from e2e_harness import Deployment, platform_config, require_environment, write_report

from bluegreen.delivery.build import build_stack_name, remove as remove_build_stack
from bluegreen.delivery.steps import step_shares

PLATFORM, INT, PROD = "bench-pipe-platform", "bench-pipe-int", "bench-pipe-prod"
PORTS = {"consul": 28750, "serf": 28751, "server": 28752, "registry": 28753, "proxy": 28754}
TARGET_S = 180.0
OUT = os.path.join(REPO, "reports", "benchmark-pipeline.json")


def env_config(environment: str) -> dict:
    platform = platform_config(PORTS, environment)
    return {"bluegreen:environment": environment,
            "bluegreen:baseImage": platform["bluegreen:baseImage"],
            "bluegreen:hosts": platform["bluegreen:hosts"],
            "bluegreen:platformStack": f"organization/bluegreen/{PLATFORM}"}


def commit(repo: str, number: int) -> None:
    """A source change, as a developer's commit would bring (the image must be rebuilt)."""
    with open(os.path.join(repo, "app", "server.py"), "a", encoding="utf-8") as handle:
        handle.write(f"\n# benchmark commit {number} at {time.time():.0f}\n")


def pipeline(repo: str, version: str, workdir: str, tree: str = REPO) -> tuple[float, dict]:
    """One `pipeline` run of the delivery code in `tree`: its wall seconds and its report."""
    report = os.path.join(workdir, f"pipeline-{version}.json")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bluegreen.delivery", "pipeline", repo, "--version", version,
                             "--integration", INT, "--production", PROD, "--report", report],
                            cwd=tree, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"pipeline {version} failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
    with open(report, encoding="utf-8") as handle:
        return seconds, json.load(handle)


def checkout(ref: str, workdir: str) -> str:
    """REF's files in a folder of their own, sharing this tree's stack files and virtualenv."""
    tree = os.path.join(workdir, "against")
    os.makedirs(tree)
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    shutil.rmtree(os.path.join(tree, "stacks"))
    for shared in ("stacks", ".venv"):
        os.symlink(os.path.join(REPO, shared), os.path.join(tree, shared))
    return tree


def paired(repo: str, workdir: str, stamp: str, runs: int, against: str) -> dict:
    """Runs of this tree and of `against`'s tree in turn; their medians and the paired ratio."""
    tree, sides = checkout(against, workdir), {"this": [], "against": []}
    for index in range(1, runs + 1):
        for side, code in (("this", REPO), ("against", tree)):
            commit(repo, index * 2 + (side == "against"))
            seconds, _ = pipeline(repo, f"pair-{stamp}-{index}-{side}", workdir, code)
            sides[side].append(round(seconds, 2))
            print(f"pair {index}: {side:<8} {seconds:6.1f}s", flush=True)
    ratios = [a / b for a, b in zip(sides["this"], sides["against"])]
    figures = {"against": against, "this_s": sides["this"], "against_s": sides["against"],
               "median_this_s": statistics.median(sides["this"]),
               "median_against_s": statistics.median(sides["against"]),
               "median_paired_ratio": round(statistics.median(ratios), 3)}
    print(f"\ncommit -> production, medians of {runs} pairs: this tree {figures['median_this_s']:.1f}s, "
          f"{against} {figures['median_against_s']:.1f}s; paired ratio this/{against} "
          f"{figures['median_paired_ratio']:.2f}")
    return figures


def show(seconds: float, report: dict) -> None:
    """Each step's duration and its share of the whole command (the lines add up to it)."""
    print(f"\n{'step':<74} {'seconds':>8} {'share':>7}")
    for number, name, step_seconds, _ in step_shares(report):
        status = next(s["status"] for s in report["steps"] if s["number"] == number)
        label = f"{number:>2} {name}" + ("" if status == "passed" else f" ({status})")
        print(f"{label:<74} {step_seconds:8.1f} {step_seconds / seconds:7.1%}")
    between = report["totalSeconds"] - sum(s["seconds"] or 0 for s in report["steps"])
    outside = seconds - report["totalSeconds"]
    print(f"{'   between steps (opening stacks, reading config and aliases)':<74} {between:8.1f} "
          f"{between / seconds:7.1%}")
    print(f"{'   outside the steps (interpreter start-up, report)':<74} {outside:8.1f} "
          f"{outside / seconds:7.1%}")
    verdict = "within" if seconds <= TARGET_S else "OVER"
    print(f"{'total, commit -> production':<74} {seconds:8.1f}   {verdict} the {TARGET_S:.0f}s target "
          f"({seconds / TARGET_S:.0%} of it)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="timed runs after the warm-up (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the stacks afterwards")
    parser.add_argument("--against", metavar="REF",
                        help="also time this commit's pipeline, in turn with this tree's (paired)")
    args = parser.parse_args()
    require_environment()
    workdir = tempfile.mkdtemp(prefix="bluegreen-bench-")
    repo = os.path.join(workdir, "vizconfig")
    shutil.copytree(os.path.join(REPO, "services", "vizconfig"), repo,
                    ignore=shutil.ignore_patterns("__pycache__"))
    platform = Deployment(PLATFORM, platform_config(PORTS, PLATFORM, environments=(INT, PROD)))
    environments = [Deployment(INT, env_config(INT)), Deployment(PROD, env_config(PROD))]
    figures = {"target_s": TARGET_S, "warmup": [], "runs": []}
    try:
        start = time.monotonic()
        platform.up()
        print(f"platform up: {time.monotonic() - start:.1f}s")
        stamp = time.strftime("%H%M%S")
        for index in (1, 2):
            seconds, report = pipeline(repo, f"warm-{stamp}-{index}", workdir)
            figures["warmup"].append(round(seconds, 1))
            print(f"warm-up run {index}: {seconds:.1f}s")
        for index in range(1, args.runs + 1):
            commit(repo, index)
            seconds, report = pipeline(repo, f"bench-{stamp}-{index}", workdir)
            print(f"\ntimed run {index}: {report['version']} is live on {PROD} "
                  f"({report['environments']['production']['after']['alias']})")
            show(seconds, report)
            figures["runs"].append({"total_s": round(seconds, 2), "steps": [
                {"number": n, "name": name, "seconds": s, "share": round(share, 4)}
                for n, name, s, share in step_shares(report)]})
        if args.runs > 1:
            totals = [run["total_s"] for run in figures["runs"]]
            figures["median_s"] = statistics.median(totals)
            print(f"\nmedian of {len(totals)} timed runs: {figures['median_s']:.1f}s "
                  f"(min {min(totals):.1f}, max {max(totals):.1f})")
        if args.against:
            figures["paired"] = paired(repo, workdir, stamp, args.runs, args.against)
    finally:
        if not args.keep:
            for deployment in reversed(environments):
                deployment.remove()
            remove_build_stack(build_stack_name("vizconfig", INT))
            platform.remove()
            images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                                    capture_output=True, text=True).stdout.split()
            mine = [i for i in images if i.startswith(f"127.0.0.1:{PORTS['registry']}/")]
            if mine:
                subprocess.run(["docker", "rmi", "-f", *mine], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    write_report(OUT, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
