"""A model-based test of the planner: random sequences of deploys (new versions and configuration-
only changes), flips, failed gates, failed flips, rollbacks with and without --to, promotes, edits
of the colour the alias names and killed runs, against a model of Consul (alias, slot records,
history) and of the stack file. The planners under test are the real ones: the program's colour
plans and live-colour check (components.stack_inputs), `plan_rollback` and promote's choice.

After every step: no applied update changed the colour the alias named, a rollback's target was
live before (or named with --to), and after every command the stack file and the alias agree."""

from __future__ import annotations

import copy
import os

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bluegreen.components.consul.records import ServiceRecords
from bluegreen.components.model.config import parse_stack_config
from bluegreen.components.model.live import dependencies_shape, serving_colour
from bluegreen.components.model.manifest import load_manifest
from bluegreen.components.model.release import (
    Release, history_entry, plan_colours, release_config, release_id, release_version
)
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import COLOURS, offline_colour
from bluegreen.components.stack_inputs import check_live_untouched, colour_change
from bluegreen.delivery.promote import runs_as_configured
from bluegreen.delivery.rollback import RollbackRefused, plan_rollback
from unit_harness import ROOT

MANIFEST = load_manifest(os.path.join(ROOT, "services/vizconfig/service.yaml"))
DEPENDENCIES = dependencies_shape(MANIFEST, "debian:bookworm-slim")
CHECKOUT = "checkout"
HOSTS = {"local": {"docker": "unix:///var/run/docker.sock", "consul": "http://127.0.0.1:18500"}}
STEPS = {"runs": 0, "steps": 0}


def reference(version: str) -> str:
    return f"127.0.0.1:15000/vizconfig@sha256:{(version.replace('.', '') * 64)[:64]:0<64}"


class Planner(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        STEPS["runs"] += 1
        self.next_version = 2
        self.file = {"manifest": "services/vizconfig/service.yaml", "live": "blue",
                     "blue": {"version": "1.0.0"}}
        self.alias: str | None = None
        self.slots: dict[str, dict] = {}        # colour -> {version, shape, release, config}
        self.history: dict[str, dict] = {}
        self.releases: dict[str, Release] = {}
        self.now = 0
        self.command_done = True                # the last step was a whole command
        self.up()                               # 1.0.0 goes live on blue
        assert self.alias == "blue"

    # -- the model of Consul and of `pulumi up` ---------------------------------------------------
    def stack(self):
        values = {"environment": "e", "hosts": HOSTS, "platform": {
            "host": "local", "consul": {"image": "c"}, "registry": {"image": "r", "port": 15000},
            "proxy": {"image": "p", "port": 18080}}, "services": {"vizconfig": self.file}}
        return parse_stack_config("e", copy.deepcopy(values), ROOT)

    def records(self) -> ServiceRecords:
        return ServiceRecords(
            releases=dict(self.releases),
            slots={c: s["version"] for c, s in self.slots.items()},
            shapes={c: s["shape"] for c, s in self.slots.items()},
            running={c: s["release"] for c, s in self.slots.items()},
            configs={c: s["config"] for c, s in self.slots.items()},
            history=copy.deepcopy(self.history), live=self.alias)

    def up(self, gate_passes: bool = True, flip_works: bool = True, killed: bool = False) -> str:
        """One `pulumi up`: refused, or the colours deploy, the requested live colour's gate
        runs and the alias flips. Returns "refused", "failed" or "done"."""
        STEPS["steps"] += 1
        self.now += 1
        stack = self.stack()
        settings = stack.services[0]
        records = self.records()
        plans = {"vizconfig": plan_colours(stack.source, settings, MANIFEST, CHECKOUT,
                                           records.releases, records.slots)}
        try:
            check_live_untouched(stack, {"vizconfig": MANIFEST}, plans, {"vizconfig": records},
                                 {"vizconfig": DEPENDENCIES})
        except ConfigError:
            return "refused"
        serving = serving_colour(self.alias)
        changes = {c: colour_change(stack, settings, {"vizconfig": MANIFEST}, plans["vizconfig"],
                                    records, c, DEPENDENCIES) for c in COLOURS}
        if serving:
            touched = changes[serving]
            assert touched.configured and touched.version == touched.recorded_version and \
                touched.shape == touched.recorded_shape, "an applied update changed the serving colour"
        for colour, plan in plans["vizconfig"].items():
            config = release_config(settings.colours[colour].environment, settings.replicas, {})
            release = release_id(plan.version, config, self.history)
            self.releases.setdefault(plan.version, Release("vizconfig", plan.version,
                                                           reference(plan.version), CHECKOUT, plan.spec))
            self.slots[colour] = {"version": plan.version, "shape": changes[colour].shape,
                                  "release": release, "config": config}
        if killed:
            return "failed"
        target = settings.live
        healthy = gate_passes or target == serving
        if healthy and flip_works:
            self.alias = target
        for colour in plans["vizconfig"]:
            slot = self.slots[colour]
            live = colour == self.alias
            self.history[slot["release"]] = history_entry(
                self.history.get(slot["release"]), version=slot["version"],
                reference=reference(slot["version"]), colour=colour, live=live,
                was_live=live and serving == colour, now=f"t{self.now:05d}", actor="model",
                release=slot["release"], config=slot["config"])
        return "done" if healthy and flip_works else "failed"

    # -- what people and commands do ---------------------------------------------------------------
    @rule(kind=st.sampled_from(["version", "config"]), gate_passes=st.booleans(),
          flip_works=st.booleans(), file_view=st.booleans())
    def deploy_and_flip(self, kind, gate_passes, flip_works, file_view):
        """A change to the offline colour with live: set to it. `file_view`: the person picks the
        colour the stack file calls offline (which is the live one when file and alias disagree)."""
        colour = offline_colour(self.file["live"] if file_view else (self.alias or "blue"))
        slot = dict(self.file.get(colour) or {"version": self.current_version()})
        slot.pop("image", None)
        if kind == "version" or colour not in self.file:
            slot["version"] = f"{self.next_version}.0.0"
            self.next_version += 1
        else:
            slot["env"] = {"FEATURE": f"f{self.now}"}
        before = copy.deepcopy(self.file)
        self.file[colour] = slot
        self.file["live"] = colour
        outcome = self.up(gate_passes, flip_works)
        if outcome == "refused":
            assert colour == self.alias, "only a change to the serving colour is refused here"
            self.file = before                  # the refused change is not merged
            return
        # A plain `pulumi up` cannot write the stack file: after a failed one the two disagree
        # until a command (rollback, promote, the pipeline) reconciles them.
        self.command_done = outcome == "done"

    @rule(new_version=st.booleans())
    @precondition(lambda self: self.alias is not None)
    def edit_the_serving_colour(self, new_version):
        before = copy.deepcopy(self.file)
        slot = dict(self.file[self.alias])
        slot.pop("image", None)
        if new_version:
            slot["version"] = f"{self.next_version}.0.0"
            self.next_version += 1
        else:
            slot["env"] = {**slot.get("env", {}), "EDITED": str(self.now)}
        self.file[self.alias] = slot
        assert self.up() == "refused", "a change to the colour the alias names is refused"
        self.file = before

    @rule(pick=st.integers(0, 50), explicit=st.booleans(), gate_passes=st.booleans(),
          killed=st.booleans())
    def rollback(self, pick, explicit, gate_passes, killed):
        settings = self.stack().services[0]
        to = None
        if explicit:
            known = sorted(set(self.history) | set(self.releases))
            to = known[pick % len(known)]
        try:
            plan = plan_rollback(settings, self.records(), to)
        except RollbackRefused:
            return
        if to is None and plan.action != "reconcile":
            entry = self.history[plan.release]
            assert entry.get("liveAt"), "a rollback's target is a release that was live"
        assert plan.live == self.alias and (plan.colour == plan.live) == (plan.action == "reconcile")
        if plan.action == "flip":
            if not gate_passes:                 # its checks fail: FlipRefused, nothing moves
                self.file["live"] = self.alias  # and the command says what serves
                self.command_done = True
                return
            self.alias = plan.colour            # the check-and-set transaction
            entry = self.history[plan.release]
            entry["liveAt"] = f"t{self.now:05d}"  # flip_together's went_live
        colour = plan.colour
        slot = dict(self.file.get(colour) or {})
        slot["version"] = plan.settings[f"{colour}.version"]
        if f"{colour}.image" in plan.settings:
            slot["image"] = plan.settings[f"{colour}.image"]
        if plan.env is not None:
            slot["env"] = dict(plan.env)
            if not slot["env"]:
                del slot["env"]
        self.file[colour] = slot
        self.file["live"] = plan.settings["live"]
        if killed:
            self.command_done = False           # the file changed, the up never ran
            return
        outcome = self.up(gate_passes=gate_passes or plan.action != "redeploy")
        assert outcome != "refused", "a rollback never touches the serving colour"
        if outcome == "failed":
            self.file["live"] = self.alias      # what the command does when its up fails
        self.command_done = True

    @rule()
    @precondition(lambda self: self.alias is not None)
    def promote(self):
        target = offline_colour(self.alias)
        slot = self.slots.get(target)
        if target not in self.file or not slot or not runs_as_configured(
                self.records(), target, self.file[target]["version"], self.file[target].get("env", {})):
            return                              # refused: nothing moves
        self.alias = target
        self.file["live"] = target
        assert self.up() != "refused"
        self.command_done = True

    @rule()
    def plain_up(self):
        """`pulumi up` of whatever the file says (after a kill, say)."""
        self.command_done = self.up() == "done"

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def file_and_alias_agree_after_each_command(self):
        if self.command_done:
            assert self.file["live"] == self.alias

    @invariant()
    def the_serving_colour_runs_a_release_that_passed_its_gate(self):
        if self.alias:
            assert self.history[self.slots[self.alias]["release"]].get("liveAt")

    def current_version(self) -> str:
        return release_version(self.slots[self.alias]["release"]) if self.alias else "1.0.0"


Planner.TestCase.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
TestPlanner = Planner.TestCase


def test_zz_the_model_explored_many_sequences():
    """Runs after TestPlanner in this module: how much it explored (quoted in the docs)."""
    assert STEPS["runs"] >= 150 and STEPS["steps"] >= 1500, STEPS
    print(f"model-based planner test: {STEPS['runs']} runs, {STEPS['steps']} pulumi ups")
