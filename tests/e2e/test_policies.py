"""The policy pack against the real engine: a clean stack previews green, a bad one is refused
with the rules' messages, and `./bg pulumi preview` runs the pack by itself. Previews only:
nothing is deployed."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml
from pulumi import automation as auto

from e2e_harness import REPO, Deployment, platform_config, require_environment

PACK = os.path.join(REPO, "policies")
PORTS = {"consul": 28800, "serf": 28801, "server": 28802, "registry": 28805, "proxy": 28880}


def stack_config(environment: str, **service) -> dict:
    config = platform_config(PORTS, environment)
    config["bluegreen:services"] = {"vizconfig": {
        "manifest": "services/vizconfig/service.yaml", "live": "blue",
        "blue": {"version": "1.0.0"}, **service}}
    return config


@pytest.fixture()
def deployment(request):
    require_environment()
    created = []

    def make(name: str, config: dict) -> Deployment:
        created.append(Deployment(name, config))
        return created[-1]

    yield make
    for d in created:
        d.remove()


def test_the_local_shape_passes_every_policy(deployment):
    result = deployment("e2e-policy-ok", stack_config("e2e-policy", green={"version": "1.0.0"})) \
        .preview(policy_packs=[PACK])
    policies = result.stdout.split("Policies:", 1)[1]
    assert f"✅ bluegreen@v0.1.0 (local: {PACK})" in policies
    assert "[mandatory]" not in policies and "[advisory]" not in policies


def test_a_bad_stack_config_is_refused_with_the_rules_messages(deployment):
    bad = deployment("e2e-policy-bad", stack_config(
        "production",
        blue={"version": "1.0.0", "env": {"DB_PASSWORD": "hunter2"}}))
    with pytest.raises(auto.CommandError) as refused:
        bad.preview(policy_packs=[PACK])
    message = str(refused.value)
    assert f"❌ bluegreen@v0.1.0 (local: {PACK})" in message
    assert "[mandatory] [severity: critical]  no-plaintext-secrets" in message
    assert "DB_PASSWORD" in message
    assert "[mandatory] [severity: high]  production-keeps-both-colours" in message
    assert "production/vizconfig has no green colour slot" in message


def test_bg_refuses_a_dependency_image_from_a_registry_the_stack_does_not_allow(deployment, tmp_path):
    """./bg pulumi preview, with no --policy-pack of its own: the pack's mandatory rule stops the
    dependency's pull, so nothing is pulled (tests/policy/test_policy_program.py shows the rule
    refuses its container too)."""
    repo = tmp_path / "vizconfig"
    shutil.copytree(os.path.join(REPO, "services", "vizconfig"), repo)
    manifest = yaml.safe_load((repo / "service.yaml").read_text())
    manifest["dependencies"]["db"] = {"image": "evil.example.com/miner:latest", "port": 6379,
                                      "memory": "128m"}
    (repo / "service.yaml").write_text(yaml.safe_dump(manifest))
    stack = "e2e-policy-reg"
    deployment(stack, stack_config("e2e-policy-reg", manifest=str(repo / "service.yaml")))
    result = subprocess.run([os.path.join(REPO, "bg"), "pulumi", "preview", "--stack", stack],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "[mandatory] [severity: high]  dependency-image-registry" in output, output
    # The pull is refused first, and the engine stops there: its container is never reached.
    assert f"the pull of dependency image {stack}-vizconfig-db-local-pull" in output, output
    assert f"stacks/policy.{stack}.json" in output and "evil.example.com" in output, output
