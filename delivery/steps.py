"""Step bookkeeping for the pipeline: numbered steps with status and duration, progress lines with
elapsed time, and the JSON report. Pure Python: no Pulumi, no Docker."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, TextIO

# What each step's status means in the report.
PENDING, PASSED, FAILED, SKIPPED, NOT_RUN, INCLUDED = (
    "pending", "passed", "failed", "skipped", "not run", "included")

PIPELINE_STEPS = (
    (1, "build the image"),
    (2, "test the image in isolation"),
    (3, "push the image to the in-house registry"),
    (4, "pull linked images and deploy integration's offline colour"),
    (5, "gate and flip integration"),
    (6, "run the service's automated tests against integration"),
    (7, "upload the service configuration to Consul"),
    (8, "deploy production's offline colour on all hosts"),
    (9, "wait until every production instance of that colour passes its checks"),
    (10, "flip production's alias"),
    (11, "check the new build is online"),
)


class StepFailed(Exception):
    """Raised inside a step: the message tells the user what failed and what stayed as it was."""


class PipelineFailed(Exception):
    def __init__(self, step: "Step", message: str):
        self.step = step
        super().__init__(f"step {step.number} ({step.name}) failed: {message}")


@dataclass
class Step:
    number: int
    name: str
    status: str = PENDING
    seconds: float | None = None
    detail: str = ""
    error: str = ""


class Run:
    """The steps of one run. `with run.step(n):` times step n, prints its progress and turns any
    exception into a failed step (then PipelineFailed); `run.record(...)` notes a step that needs no
    work of its own (done inside another one, or skipped)."""

    def __init__(self, steps=PIPELINE_STEPS, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.steps = {number: Step(number, name) for number, name in steps}
        self.total = len(self.steps)
        self.out = out or sys.stdout
        self.clock = clock
        self.started = clock()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.failed: Step | None = None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            print(f"    {line}", file=self.out, flush=True)

    def _header(self, step: Step, suffix: str = "") -> None:
        print(f"==> [{step.number}/{self.total}] {step.name}{suffix}  (at {self.elapsed():.1f}s)",
              file=self.out, flush=True)

    @contextlib.contextmanager
    def step(self, number: int, name: str | None = None) -> Iterator[Step]:
        step = self.steps[number]
        if name:
            step.name = name
        self._header(step)
        start = self.clock()
        try:
            yield step
        except Exception as error:  # noqa: BLE001 - every failure names its step
            step.seconds = round(self.clock() - start, 2)
            step.status = FAILED
            step.error = str(error) or type(error).__name__
            self.failed = step
            self.say(f"FAILED after {step.seconds:.1f}s: {step.error}")
            raise PipelineFailed(step, step.error) from error
        step.seconds = round(self.clock() - start, 2)
        if step.status == PENDING:
            step.status = PASSED
        self.say(f"{step.status} in {step.seconds:.1f}s (total {self.elapsed():.1f}s)")

    def record(self, number: int, status: str, detail: str, name: str | None = None) -> Step:
        step = self.steps[number]
        if name:
            step.name = name
        step.status, step.detail, step.seconds = status, detail, 0.0
        self._header(step, f": {status}")
        self.say(detail)
        return step

    def finish(self) -> None:
        """Marks what never ran after a failure."""
        for step in self.steps.values():
            if step.status == PENDING:
                step.status = NOT_RUN

    def report(self, **extra) -> dict:
        self.finish()
        failed = self.failed
        return {
            **extra,
            "result": "failed" if failed or extra.get("error") else "succeeded",
            "failedStep": None if failed is None else
            {"number": failed.number, "name": failed.name, "error": failed.error},
            "startedAt": self.started_at,
            "totalSeconds": round(self.elapsed(), 2),
            "steps": [asdict(step) for step in sorted(self.steps.values(), key=lambda s: s.number)],
        }


def write_report(path: str, report: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")


def step_shares(report: dict) -> list[tuple[int, str, float, float]]:
    """(number, name, seconds, share of the total) per step: what the benchmark prints."""
    total = report.get("totalSeconds") or 0.0
    return [(s["number"], s["name"], s["seconds"] or 0.0,
             (s["seconds"] or 0.0) / total if total else 0.0) for s in report["steps"]]
