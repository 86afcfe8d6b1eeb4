"""What least privilege costs a deploy and a flip: the blue/green end-to-end sequence
(tests/e2e/test_bluegreen.py: first deploy, v2 on green and flip under load, rollback under load)
run on a baseline commit without ACLs and on this tree, alternately, in one run. Not a test.

    flock /tmp/bluegreen-e2e.lock ./bg bench acl_cost [--baseline REF] [--runs N]

The baseline is `git archive REF` in a temporary directory with its own .venv and state; each
`./bg test` there or here rebuilds the platform images from its own tree first. Prints the
median of each figure per side and the ratio this tree / baseline; the figures also go to
reports/benchmark-acl-cost.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "reports", "benchmark-acl-cost.json")
FIGURES = ("first_deploy_s", "version_bump_up_s", "version_bump_flip_s", "rollback_up_s",
           "rollback_flip_s", "version_bump_failed_requests", "rollback_failed_requests")


def export(ref: str) -> str:
    """The tree of `ref` in a temporary directory (a plain copy, not a worktree)."""
    directory = tempfile.mkdtemp(prefix="bluegreen-baseline-")
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
    return directory


def run_sequence(tree: str) -> dict:
    """`./bg test tests/e2e/test_bluegreen.py` in `tree`; returns its figures."""
    figures = os.path.join(tree, "reports", "e2e", "bluegreen-figures.json")
    if os.path.exists(figures):
        os.remove(figures)
    env = {k: v for k, v in os.environ.items() if k not in ("PULUMI_BACKEND_URL",)}
    result = subprocess.run([os.path.join(tree, "bg"), "test", "tests/e2e/test_bluegreen.py", "-q"],
                            cwd=tree, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        sys.exit(f"the sequence failed in {tree}:\n{result.stdout[-3000:]}{result.stderr[-1500:]}")
    with open(figures, encoding="utf-8") as handle:
        return json.load(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="ef7a58a",
                        help="a commit without ACLs (default: ef7a58a, the last one before them)")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    baseline = export(args.baseline)
    runs: dict[str, list[dict]] = {"baseline": [], "acl": []}
    try:
        for number in range(args.runs):
            for side, tree in (("baseline", baseline), ("acl", REPO)):
                print(f"run {number + 1}/{args.runs}: {side}", flush=True)
                runs[side].append(run_sequence(tree))
        # Leave this tree's platform images in place for whoever runs next.
        subprocess.run([os.path.join(REPO, "bg"), "setup"], cwd=REPO, capture_output=True)
    finally:
        shutil.rmtree(baseline, ignore_errors=True)
    medians = {side: {f: statistics.median(r[f] for r in results if f in r)
                      for f in FIGURES if any(f in r for r in results)}
               for side, results in runs.items()}
    print(f"\n{'figure':32} {'baseline':>10} {'ACLs':>10} {'ratio':>7}   (medians of {args.runs})")
    for figure in FIGURES:
        base, acl = medians["baseline"].get(figure), medians["acl"].get(figure)
        if base is None or acl is None:
            continue
        ratio = f"{acl / base:.2f}" if base else "-"
        print(f"{figure:32} {base:>10.2f} {acl:>10.2f} {ratio:>7}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as handle:
        json.dump({"baseline": args.baseline, "runs": runs, "medians": medians}, handle, indent=2)


if __name__ == "__main__":
    main()
