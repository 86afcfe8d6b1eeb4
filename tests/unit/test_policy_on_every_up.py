"""The policy pack runs on every `pulumi up` the project starts: ./bg up and ./bg pulumi
up|update|preview add it (bootstrap/policy.sh), and the delivery commands' ups (an environment
stack's, a build stack's) pass it to the Automation API."""

import json
import os
import subprocess
import types

import pytest
import yaml

from bluegreen.delivery import build, recovery, stacks
from bluegreen.policies.rules.common import policy_config_file
from unit_harness import ROOT

PACK = os.path.join(ROOT, "policies")


def pulumi_args(*args: str) -> list[str]:
    """What ./bg hands pulumi for `./bg pulumi ARGS...` (run from the repo, as ./bg does)."""
    # bg's stack_argument, for the stack the command names (--stack S here).
    script = ('repo=$1; shift; source "$repo/bootstrap/policy.sh"; '
              'stack_argument() { local p=""; for a in "$@"; do [ "$p" != --stack ] || echo "$a"; p=$a; done; }; '
              'with_policy_pack "$@"; printf "%s\\n" "${pulumi_args[@]}"')
    result = subprocess.run(["bash", "-c", script, "bash", ROOT, *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=10, check=True)
    return result.stdout.splitlines()


@pytest.mark.parametrize("command", ["up", "update", "preview"])
def test_bg_adds_the_pack_to_what_changes_or_previews_a_stack(command):
    assert pulumi_args(command, "--yes", "--stack", "local") == \
        [command, "--yes", "--stack", "local", "--policy-pack", PACK]


@pytest.mark.parametrize("stack", ["integration", "production"])
def test_bg_gives_the_pack_the_stacks_own_config(stack):
    config = os.path.join(ROOT, "stacks", f"policy.{stack}.json")
    assert pulumi_args("up", "--stack", stack)[-4:] == ["--policy-pack", PACK, "--policy-pack-config", config]


def test_the_lab_stacks_allow_the_lab_platforms_registry():
    """Their services' images come from the platform's registry, published on the platform
    host's lab address: the pack's default (loopback only) would refuse every one of them."""
    with open(os.path.join(ROOT, "stacks", "Pulumi.platform.yaml"), encoding="utf-8") as handle:
        platform = yaml.safe_load(handle)["config"]
    settings = platform["bluegreen:platform"]
    registry = f"{platform['bluegreen:hosts'][settings['host']]['address']}:{settings['registry']['port']}"
    for stack in ("integration", "production"):
        [path] = stacks.policy_configs(stack)
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
        for rule in ("service-image-pinned", "dependency-image-registry"):
            assert config[rule]["registries"] == [registry], (stack, rule)
    assert stacks.policy_configs("local") is None


def test_the_packs_refusals_name_the_file_the_commands_pass():
    urn = "urn:pulumi:production::bluegreen::docker:index/container:Container::c"
    assert stacks.policy_configs("production") == [os.path.join(ROOT, policy_config_file(urn))]


def test_bg_up_runs_the_pack():
    with open(os.path.join(ROOT, "bg"), encoding="utf-8") as handle:
        text = handle.read()
    assert 'with_policy_pack up --yes --skip-preview --stack "$stack"' in text
    assert 'pulumi "${pulumi_args[@]}"' in text


@pytest.mark.parametrize("given", [["--policy-pack", "policies"], ["--policy-pack=./policies"],
                                   ["--policy-pack", PACK]])
def test_bg_adds_the_pack_once(given):
    assert pulumi_args("up", "--stack", "local", *given) == ["up", "--stack", "local", *given]


def test_another_pack_adds_to_the_projects():
    assert pulumi_args("up", "--policy-pack", "/tmp")[-2:] == ["--policy-pack", PACK]


@pytest.mark.parametrize("args", [["stack", "output"], ["destroy", "--yes"], ["refresh"]])
def test_other_commands_are_left_as_they_are(args):
    assert pulumi_args(*args) == args


class Recorded:
    """An Automation API stack that records the options of its `up`."""

    def __init__(self):
        self.options: dict = {}

    def up(self, **options):
        self.options = options
        return types.SimpleNamespace(summary=types.SimpleNamespace(resource_changes={}),
                                     outputs={"image": types.SimpleNamespace(value="r@sha256:1"),
                                              "digest": types.SimpleNamespace(value="sha256:1")})


def test_an_environment_stacks_up_runs_the_pack(monkeypatch):
    monkeypatch.setattr(recovery, "recover", lambda *args: None)
    stack = stacks.EnvStack("local")
    stack._stack = Recorded()
    stack.up("flip vizconfig to green")
    assert stack._stack.options["policy_packs"] == [PACK]
    assert stack._stack.options["policy_pack_configs"] is None
    production = stacks.EnvStack("production")
    production._stack = Recorded()
    production.up("flip vizconfig to blue")
    assert production._stack.options["policy_pack_configs"] == [
        os.path.join(ROOT, "stacks", "policy.production.json")]


def test_a_build_stacks_up_runs_the_pack(monkeypatch):
    recorded = Recorded()
    monkeypatch.setattr(build, "workspace_stack", lambda name, run=None: recorded)
    monkeypatch.setattr(build, "program", lambda request: None)
    build.build(types.SimpleNamespace(stack="build-vizconfig"))
    assert recorded.options["policy_packs"] == [PACK]
