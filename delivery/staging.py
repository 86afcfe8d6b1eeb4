"""Production's offline colour deployed while integration's steps (4-6) run: the pipeline's step 8,
started early in a thread, so the two `pulumi up`s overlap.

Only when nothing of it can reach what serves: the offline colour is the one the alias does not
name, the release brings no change to production's configuration in Consul KV (containers of
both colours read it live), and the colour it replaces records a release (version and digest), so
that a failure in integration puts that release back exactly (`restore`): production's rollback
target is never left on a candidate that integration refused."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from bluegreen.components.model.config import ServiceConfig

from .stacks import EnvStack


@dataclass(frozen=True)
class StagePlan:
    """What staging writes to production's stack file, and what puts the colour back."""

    colour: str
    live: str
    changes: dict[str, str]
    restore: dict[str, str]

    @property
    def restore_version(self) -> str:
        """The version the colour ran before, which a failure in integration puts back."""
        return self.restore[f"{self.colour}.version"]


def stage_plan(settings: ServiceConfig | None, colour: str, live: str | None,
               changes: dict, config_changes: list[str]) -> StagePlan | None:
    """The plan to stage `changes` on production's `colour` early, or None when step 8 must wait
    for integration: a first deploy, a re-run (nothing to deploy), a colour that records no
    release to restore, or a change of the configuration in Consul KV (`config_changes`)."""
    if settings is None or live is None or colour == live or not changes or config_changes:
        return None
    before = settings.colours.get(colour)
    if before is None or before.image is None:
        return None
    return StagePlan(colour, live, changes, {f"{colour}.version": before.version,
                                             f"{colour}.image": before.image})


@dataclass
class Staging:
    """A staged step 8 running in a thread: the stack file's change, then `up`."""

    stack: EnvStack
    service: str
    plan: StagePlan
    label: str
    outputs: dict | None = None
    error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    _thread: threading.Thread | None = None

    def start(self) -> "Staging":
        self._thread = threading.Thread(target=self._deploy, name=f"stage-{self.stack.name}", daemon=True)
        self._thread.start()
        return self

    def _deploy(self) -> None:
        try:
            self.stack.set_service(self.service, self.plan.changes)
            self.outputs = self.stack.up(self.label)
        except BaseException as error:  # noqa: BLE001 - handed to the joining thread
            self.error = error
        self.seconds = time.monotonic() - self.started

    def join(self) -> dict:
        """The `up`'s outputs once it ended; its error, raised here."""
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.outputs is not None
        return self.outputs

    def restore(self) -> str:
        """After integration failed: the colour's earlier release back, in the stack file and
        with an `up`. Says what it did."""
        try:
            self.join()
        except Exception:  # noqa: BLE001 - the release before goes back either way
            pass
        self.stack.set_service(self.service, self.plan.restore)
        self.stack.up(f"restore {self.plan.colour} {self.plan.restore_version}")
        return (f"production's {self.plan.colour} runs {self.plan.restore_version} "
                f"again (staged during integration, put back after integration failed)")
