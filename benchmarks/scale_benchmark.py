"""One service's deploy, flip, rollback, no-op `up` and preview at 1, 30 and 100 services per
environment, each service in its own service stack; and, for comparison, with every service in one
environment stack. Not a test: run it, read the figures.

    ./bg bench scale_benchmark [--sizes 1,30,100] [--rounds 3] [--workers 4] [--no-compare]
                               [--limit-minutes 50]

Everything runs on stacks of its own (bench-scale-platform on 127.0.0.1 ports 28820-28824, the
environment stack bench-scale with service stacks bench-scale.s000 ..., and bench-scale-all for
the comparison). One small image is built and pushed once, and every service's colours pin it by
digest, so no deploy builds anything. The services are deployed a few at a time; then, at each
size, `first deploy` is the first `up` of the last service added (alone), and service s000 is
measured through what a user runs: offline deploy (a new version on green: config change + up),
flip (live: green + up), rollback (`./bg rollback --to 1.0.0`: blue still runs it, so the alias
moves first, then up), no-op up, preview.
Medians of --rounds rounds. Past --limit-minutes it stops measuring and cleans up; everything it
created is destroyed at the end. Figures go to stdout and reports/benchmark-scale.json."""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml
from pulumi import automation as auto

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from e2e_harness import (Deployment, get_json, platform_config, push_tiny_image, require_environment,
                         tiny_service, wait_until)

from bluegreen.delivery.rollback import run_rollback
from bluegreen.delivery.stacks import EnvStack

PLATFORM = "bench-scale-platform"
ENV_STACK, ENVIRONMENT = "bench-scale", "bscale"
ALL_STACK, ALL_ENVIRONMENT = "bench-scale-all", "bscaleall"
PORTS = {"consul": 28820, "serf": 28821, "server": 28822, "registry": 28823, "proxy": 28824}
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
OPS = ("first deploy", "offline deploy", "flip", "rollback", "no-op up", "preview")
OUT = os.path.join(REPO, "reports", "benchmark-scale.json")
LOG = os.path.join(REPO, "reports", "benchmark-scale.log")


class OutOfTime(Exception):
    """The time limit passed: stop measuring, clean up, print what was measured."""


def service_name(index: int) -> str:
    return f"s{index:03d}"


def stack_path(stack: str) -> str:
    return os.path.join(REPO, "stacks", f"Pulumi.{stack}.yaml")


def write_stack(stack: str, config: dict) -> None:
    with open(stack_path(stack), "w", encoding="utf-8") as handle:
        handle.write("# Written by benchmarks/scale_benchmark.py; removed when it ends.\n")
        yaml.safe_dump({"config": config}, handle, sort_keys=False)


class Bench:
    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + args.limit_minutes * 60
        self.workdir = tempfile.mkdtemp(prefix="bluegreen-scale-")
        self.image = ""
        self.manifests: dict[str, str] = {}
        self.stacks: list[str] = []          # service stacks made, for the clean-up
        self.leftovers: list[str] = []       # stacks whose destroy failed: removed by force at the end
        self.results: dict = {"service stacks": {}, "environment stack": {}, "deployAll": {}}

    # -- helpers
    def check_time(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise OutOfTime(f"time limit of {self.args.limit_minutes} min reached before {what}")

    def manifest(self, name: str) -> str:
        if name not in self.manifests:
            self.manifests[name] = tiny_service(os.path.join(self.workdir, name), name)
        return self.manifests[name]

    def entry(self, name: str) -> dict:
        return {"manifest": self.manifest(name), "live": "blue",
                "blue": {"version": "1.0.0", "image": self.image}}

    def environment_values(self, environment: str) -> dict:
        platform = platform_config(PORTS, environment)
        return {"bluegreen:environment": environment,
                "bluegreen:platformStack": f"organization/bluegreen/{PLATFORM}",
                "bluegreen:baseImage": platform["bluegreen:baseImage"],
                "bluegreen:hosts": platform["bluegreen:hosts"]}

    @staticmethod
    def timed(action) -> float:
        start = time.monotonic()
        action()
        return time.monotonic() - start

    # -- service stacks
    def deploy_service_stack(self, index: int) -> float:
        self.check_time(f"deploying {service_name(index)}")
        name = service_name(index)
        stack = f"{ENV_STACK}.{name}"
        write_stack(stack, {"bluegreen:environmentStack": ENV_STACK,
                            "bluegreen:services": {name: self.entry(name)}})
        self.stacks.append(stack)
        return self.timed(lambda: EnvStack(stack, LOG).up(f"first deploy of {name}"))

    def grow_to(self, size: int) -> float:
        """Deploys services up to `size` (all but the last a few at a time); returns the seconds
        of the last one's first `up`, made alone."""
        start = len(self.stacks)
        began = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(self.args.workers) as pool:
            for seconds in pool.map(self.deploy_service_stack, range(start, size - 1)):
                pass
        self.results["deployAll"][str(size)] = round(time.monotonic() - began, 1)
        return self.deploy_service_stack(size - 1)

    # -- one service's operations
    def measure(self, stack_name: str, service: str, environment: str, first: float, label: str) -> dict:
        stack = EnvStack(stack_name, LOG)
        times: dict[str, list[float]] = {op: [] for op in OPS[1:]}
        load: list[float] = []     # the machine's 1-minute load after each round: others' work shows
        url = f"{PROXY}/{environment}/{service}/"
        for round_no in range(self.args.rounds):
            self.check_time(f"round {round_no + 1} at {label}")
            version = f"2.{len(self.stacks)}.{round_no}" if stack_name != ALL_STACK else f"3.0.{round_no}"
            times["offline deploy"].append(self.timed(lambda: (
                stack.set_service(service, {"green.version": version, "green.image": self.image}),
                stack.up(f"{label}: green {version}"))))
            times["flip"].append(self.timed(lambda: (
                stack.set_service(service, {"live": "green"}), stack.up(f"{label}: flip"))))
            wait_until(lambda: get_json(url).get("version") == version, 20, what=f"{url} serving {version}")
            out = io.StringIO()
            code = []
            # Back to 1.0.0, which blue still runs: the alias-only rollback every round.
            times["rollback"].append(self.timed(lambda: code.append(
                run_rollback(service, stack_name, to="1.0.0", out=out))))
            if code != [0]:
                raise RuntimeError(f"rollback failed at {label}:\n{out.getvalue()}")
            wait_until(lambda: get_json(url).get("version") == "1.0.0", 20, what=f"{url} serving 1.0.0")
            times["no-op up"].append(self.timed(lambda: stack.up(f"{label}: no-op")))
            changed = {op: n for op, n in stack.last_changes.items() if op != "same" and n}
            if changed:
                print(f"    note: the no-op up at {label} changed {changed}", flush=True)
            times["preview"].append(self.timed(lambda: stack.stack.preview(color="never")))
            load.append(os.getloadavg()[0])
            print(f"    round {round_no + 1}: " + ", ".join(f"{op} {v[-1]:.1f}s" for op, v in times.items())
                  + f" (load {load[-1]:.1f})", flush=True)
        row = {"first deploy": round(first, 2)}
        row.update({op: round(statistics.median(v), 2) for op, v in times.items()})
        row["samples"] = {op: [round(x, 2) for x in v] for op, v in times.items()}
        row["load"] = [round(x, 1) for x in load]
        return row

    # -- the whole run
    def run(self) -> None:
        require_environment()
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        platform = Deployment(PLATFORM, platform_config(PORTS, "", environments=(ENVIRONMENT,)))
        self.platform = platform
        print(f"platform stack {PLATFORM}", flush=True)
        platform.up()
        self.image = push_tiny_image(os.path.join(self.workdir, "tiny"), f"127.0.0.1:{PORTS['registry']}")
        print(f"one image for every service: {self.image}", flush=True)
        write_stack(ENV_STACK, self.environment_values(ENVIRONMENT))
        for size in self.args.sizes:
            print(f"\n== N = {size}: service stacks {ENV_STACK}.s000 .. {ENV_STACK}.{service_name(size - 1)}",
                  flush=True)
            first = self.grow_to(size)
            print(f"    deployed (first up of {service_name(size - 1)}: {first:.1f}s)", flush=True)
            for index in (0, size - 1):
                wait_until(lambda i=index: get_json(f"{PROXY}/{ENVIRONMENT}/{service_name(i)}/"), 30,
                           what=f"{service_name(index)} through the proxy")
            self.results["service stacks"][str(size)] = self.measure(
                f"{ENV_STACK}.s000", "s000", ENVIRONMENT, first, f"N={size}")
        if self.args.compare:
            self.destroy_service_stacks()
            size = self.args.compare_size
            print(f"\n== comparison: N = {size} in one environment stack {ALL_STACK}", flush=True)
            self.check_time("the comparison")
            values = self.environment_values(ALL_ENVIRONMENT)
            values["bluegreen:services"] = {service_name(i): self.entry(service_name(i)) for i in range(size - 1)}
            write_stack(ALL_STACK, values)
            self.results["deployAll"][f"{size} in one stack"] = round(
                self.timed(lambda: EnvStack(ALL_STACK, LOG).up("all but one")), 1)
            stack = EnvStack(ALL_STACK, LOG)
            last = service_name(size - 1)
            first = self.timed(lambda: (stack.set_service(last, {
                "manifest": self.manifest(last), "live": "blue", "blue.version": "1.0.0",
                "blue.image": self.image}), stack.up(f"first deploy of {last}")))
            self.results["environment stack"][str(size)] = self.measure(
                ALL_STACK, "s000", ALL_ENVIRONMENT, first, f"one stack N={size}")

    # -- clean-up
    def destroy_stack(self, name: str) -> None:
        for attempt in range(3):
            try:
                stack = auto.select_stack(stack_name=name, work_dir=REPO)
                stack.destroy(color="never", on_output=lambda _line: None)
                stack.workspace.remove_stack(name)
                break
            except auto.CommandError as error:
                print(f"    could not destroy {name} (attempt {attempt + 1}): "
                      f"{' '.join(str(error).split())[-300:]}", flush=True)
                time.sleep(2)
        else:
            self.leftovers.append(name)
        if os.path.exists(stack_path(name)):
            os.remove(stack_path(name))

    def destroy_service_stacks(self) -> None:
        if not self.stacks:
            return
        print(f"\n== destroying {len(self.stacks)} service stacks", flush=True)
        with concurrent.futures.ThreadPoolExecutor(self.args.workers) as pool:
            list(pool.map(self.destroy_stack, self.stacks))
        self.stacks = []

    def clean_up(self) -> None:
        self.destroy_service_stacks()
        if os.path.exists(stack_path(ALL_STACK)):
            self.destroy_stack(ALL_STACK)
        if os.path.exists(stack_path(ENV_STACK)):
            os.remove(stack_path(ENV_STACK))
        if getattr(self, "platform", None) is not None:
            try:
                self.platform.remove()
            except auto.CommandError as error:
                print(f"    could not destroy {PLATFORM}: {' '.join(str(error).split())[-300:]}", flush=True)
        # Anything a failed destroy left behind, by the names only this benchmark uses.
        for prefix in (f"bluegreen-{ENVIRONMENT}-", f"bluegreen-{ALL_ENVIRONMENT}-"):
            names = subprocess.run(["docker", "ps", "-aq", "--filter", f"name={prefix}"],
                                   capture_output=True, text=True).stdout.split()
            if names:
                subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
        for name in self.leftovers:   # their containers are gone (above); forget their state
            subprocess.run(["pulumi", "stack", "rm", "--force", "--yes", "--stack", name], cwd=REPO,
                           capture_output=True)
        if self.image:
            subprocess.run(["docker", "rmi", self.image.split("@")[0] + ":1"], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def print_table(results: dict) -> None:
    rows = results["service stacks"]
    header = f"{'':<26}" + "".join(f"{op:>16}" for op in OPS)
    print("\nmedian seconds for one service (s000); first deploy = first up of the N-th service\n")
    print(header + f"{'load':>8}")
    for size, row in rows.items():
        print(f"{'service stacks, N=' + size:<26}" + "".join(f"{row[op]:>16.2f}" for op in OPS)
              + f"{max(row['load'], default=0):>8.1f}")
    sizes = list(rows)
    if len(sizes) > 1:
        low, high = rows[sizes[0]], rows[sizes[-1]]
        print(f"{f'ratio N={sizes[-1]} / N={sizes[0]}':<26}" + "".join(f"{high[op] / low[op]:>15.2f}x" for op in OPS))
    for size, row in results["environment stack"].items():
        print(f"{'one env stack, N=' + size:<26}" + "".join(f"{row[op]:>16.2f}" for op in OPS)
              + f"{max(row['load'], default=0):>8.1f}")
        if size in rows:
            print(f"{f'  vs service stacks N={size}':<26}"
                  + "".join(f"{row[op] / rows[size][op]:>15.2f}x" for op in OPS))
    if results["deployAll"]:
        print("\ndeploying the services (wall clock): " + ", ".join(
            f"N={k}: {v}s" for k, v in results["deployAll"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,30,100", help="comma-separated N, increasing (default 1,30,100)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per N (median)")
    parser.add_argument("--workers", type=int, default=4, help="stacks deployed at a time")
    parser.add_argument("--compare-size", type=int, default=30,
                        help="N for the one-environment-stack comparison (default 30)")
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="skip the one-environment-stack comparison")
    parser.add_argument("--limit-minutes", type=float, default=50.0,
                        help="stop measuring (and clean up) past this many minutes")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if args.sizes != sorted(set(args.sizes)) or args.sizes[0] < 1:
        parser.error("--sizes must be increasing positive numbers, e.g. 1,30,100")
    bench = Bench(args)
    started = time.monotonic()
    status = 0
    try:
        bench.run()
    except OutOfTime as stop:
        print(f"\nstopped: {stop}", flush=True)
        status = 3
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - cleaned up, then reported
        print(f"\nfailed: {type(error).__name__}: {' '.join(str(error).split())[:1500]}", flush=True)
        status = 1
    finally:
        bench.clean_up()
    bench.results["totalMinutes"] = round((time.monotonic() - started) / 60, 1)
    with open(OUT, "w", encoding="utf-8") as handle:
        json.dump(bench.results, handle, indent=2)
    print_table(bench.results)
    print(f"\n{bench.results['totalMinutes']} min in all; figures in {os.path.relpath(OUT, REPO)}, "
          f"pulumi logs in {os.path.relpath(LOG, REPO)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
