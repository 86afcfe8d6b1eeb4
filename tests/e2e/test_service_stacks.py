"""Service stacks: two services of one environment, each in its own stack that inherits the
environment stack, deployed at the same time by two Automation API `up`s that do not wait on each
other; both serve through the proxy, and one cannot take the other's route. Services without
dependencies make no Docker network."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
import yaml
from pulumi import automation as auto

from e2e_harness import (REPO, Deployment, container_identity, docker_names, get_json,
                         platform_config, require_environment, tiny_service, wait_until)

from bluegreen.components.consul import api as consul_api
from bluegreen.components.naming import route_claim_key, routes_prefix
from bluegreen.delivery.preview import affected_stacks
from bluegreen.delivery.stacks import EnvStack, stack_for_service

PORTS = {"consul": 28840, "serf": 28841, "server": 28842, "registry": 28843, "proxy": 28844}
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
PLATFORM, ENV_STACK, ENVIRONMENT = "e2e-svcstk-platform", "e2e-svcstk-env", "e2e-svcstk"
SERVICES = ("alpha", "beta")


def service_stack_name(service: str) -> str:
    return f"{ENV_STACK}.{service}"


@pytest.fixture(scope="module")
def deployed():
    require_environment()
    workdir = tempfile.mkdtemp(prefix="bluegreen-svcstk-")
    platform = Deployment(PLATFORM, platform_config(PORTS, "", environments=(ENVIRONMENT,)))
    env_file = os.path.join(REPO, "stacks", f"Pulumi.{ENV_STACK}.yaml")
    stacks: dict[str, Deployment] = {}
    try:
        platform.up()
        environment = platform_config(PORTS, ENVIRONMENT)
        with open(env_file, "w", encoding="utf-8") as handle:
            handle.write("# Written by the end-to-end tests: an environment stack on a shared platform.\n")
            yaml.safe_dump({"config": {
                "bluegreen:environment": ENVIRONMENT,
                "bluegreen:platformStack": f"organization/bluegreen/{PLATFORM}",
                "bluegreen:baseImage": environment["bluegreen:baseImage"],
                "bluegreen:hosts": environment["bluegreen:hosts"]}}, handle, sort_keys=False)
        for service in SERVICES:
            manifest = tiny_service(os.path.join(workdir, service), service)
            stacks[service] = Deployment(service_stack_name(service), {
                "bluegreen:environmentStack": ENV_STACK,
                "bluegreen:services": {service: {"manifest": manifest, "live": "blue",
                                                 "blue": {"version": "1.0.0"}}}})
        timings: dict[str, tuple[float, float]] = {}
        errors: dict[str, BaseException] = {}

        def up(service: str) -> None:
            start = time.monotonic()
            try:
                stacks[service].up()
            except BaseException as error:  # noqa: BLE001 - reported by the test
                errors[service] = error
            timings[service] = (start, time.monotonic())

        threads = [threading.Thread(target=up, args=(s,)) for s in SERVICES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        yield {"timings": timings, "errors": errors, "stacks": stacks, "workdir": workdir,
               "platform": platform}
    finally:
        for deployment in stacks.values():
            deployment.remove()
        if os.path.exists(env_file):
            os.remove(env_file)
        platform.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def test_two_service_stacks_deploy_at_the_same_time(deployed):
    assert not deployed["errors"], deployed["errors"]
    (a_start, a_end), (b_start, b_end) = (deployed["timings"][s] for s in SERVICES)
    # Each `up` ran while the other did: neither waited for the other's stack lock.
    assert a_start < b_end and b_start < a_end
    overlap = min(a_end, b_end) - max(a_start, b_start)
    assert overlap > 0.5 * min(a_end - a_start, b_end - b_start)


def test_both_serve_through_the_proxy(deployed):
    for service in SERVICES:
        body, _ = wait_until(lambda s=service: get_json(f"{PROXY}/{ENVIRONMENT}/{s}/"), 30,
                             what=f"{service} through the proxy")
        assert body == {"name": service, "version": "1.0.0", "colour": "blue",
                        "environment": ENVIRONMENT}


def test_a_route_another_stack_of_the_environment_holds_is_refused_before_any_change(deployed):
    """beta's manifest asks for alpha's route: its own stack holds no other service, so only the
    environment's claims in Consul can refuse it, and preview and up stop before anything changes."""
    beta, manifest = deployed["stacks"]["beta"], os.path.join(deployed["workdir"], "beta", "service.yaml")
    consul = f"http://127.0.0.1:{PORTS['consul']}"
    token = deployed["platform"].deployer_token(ENVIRONMENT)
    routes = consul_api.kv_tree(consul, routes_prefix(ENVIRONMENT), token)
    assert {route_claim_key(ENVIRONMENT, s): s for s in SERVICES}.items() <= routes.items()
    before = resources_of(beta)
    with open(manifest, encoding="utf-8") as handle:
        original = handle.read()
    try:
        with open(manifest, "w", encoding="utf-8") as handle:
            handle.write(original.replace("route: beta", "route: alpha"))
        for attempt in (beta.preview, beta.up):
            with pytest.raises(auto.CommandError) as refused:
                attempt()
            message = " ".join(str(refused.value).split())
            assert (f"{manifest}: route: route /{ENVIRONMENT}/alpha/ is taken by service alpha in "
                    f"environment {ENVIRONMENT} (stacks/Pulumi.{service_stack_name('alpha')}.yaml)") in message
            assert f"stacks/Pulumi.{service_stack_name('beta')}.yaml deploys beta there" in message
            assert "choose another route for beta" in message and "nothing was changed" in message
        assert resources_of(beta) == before
        assert consul_api.kv_tree(consul, routes_prefix(ENVIRONMENT), token) == routes
    finally:
        with open(manifest, "w", encoding="utf-8") as handle:
            handle.write(original)
    for service in SERVICES:   # alpha keeps its route, and beta its own
        body, _ = wait_until(lambda s=service: get_json(f"{PROXY}/{ENVIRONMENT}/{s}/"), 30, what=service)
        assert body["name"] == service


def resources_of(deployment: Deployment) -> list:
    """Each resource of a stack's state as its last update left it: URN, inputs and outputs."""
    state = deployment.stack.export_stack().deployment
    return [(r["urn"], r.get("inputs"), r.get("outputs")) for r in state.get("resources") or []]


def test_services_without_dependencies_make_no_network(deployed):
    assert docker_names("network", f"bluegreen-{ENVIRONMENT}-") == []


def test_delivery_reads_the_inherited_config(deployed):
    assert stack_for_service(ENV_STACK, "alpha") == service_stack_name("alpha")
    config = EnvStack(service_stack_name("alpha")).config()
    assert config.environment == ENVIRONMENT and config.environment_stack == ENV_STACK
    assert [s.name for s in config.services] == ["alpha"]


def test_a_change_to_one_service_stack_previews_only_that_stack(deployed):
    # The files as the preview reads them (these are git-ignored, so not via stack_configs()).
    configs = {}
    for name in (ENV_STACK, *map(service_stack_name, SERVICES)):
        with open(os.path.join(REPO, "stacks", f"Pulumi.{name}.yaml"), encoding="utf-8") as handle:
            configs[name] = yaml.safe_load(handle)["config"]
    path = f"stacks/Pulumi.{service_stack_name('alpha')}.yaml"
    assert affected_stacks([path], configs)[0] == [service_stack_name("alpha")]
    assert affected_stacks([f"stacks/Pulumi.{ENV_STACK}.yaml"], configs)[0] == \
        [ENV_STACK, *map(service_stack_name, SERVICES)]
    # The first up built and released 1.0.0; the next one drops the build resources (a released
    # version runs its recorded digest), after which nothing changes.
    deployed["stacks"]["alpha"].up()
    start = time.monotonic()
    result = deployed["stacks"]["alpha"].preview()
    assert result.change_summary.get("same") and not {
        k for k, v in result.change_summary.items() if k != "same" and v}
    assert time.monotonic() - start < 60


def test_a_service_moves_from_its_environment_stack_into_a_service_stack_untouched(deployed):
    """A service the environment stack deploys moves into a service stack with `pulumi state
    move`: the service stack's first up replaces nothing, and neither does the environment's."""
    env_file = os.path.join(REPO, "stacks", f"Pulumi.{ENV_STACK}.yaml")
    with open(env_file, encoding="utf-8") as handle:
        env_config = yaml.safe_load(handle)["config"]
    manifest = tiny_service(os.path.join(deployed["workdir"], "gamma"), "gamma")
    entry = {"manifest": manifest, "live": "blue", "blue": {"version": "1.0.0"}}
    environment = Deployment(ENV_STACK, {**env_config, "bluegreen:services": {"gamma": entry}})
    target = None
    try:
        environment.up()
        environment.up()   # drops the build resources of the now released 1.0.0
        container = f"bluegreen-{ENVIRONMENT}-gamma-blue-local-0"
        before = container_identity(container)
        target = Deployment(service_stack_name("gamma"), {"bluegreen:environmentStack": ENV_STACK,
                                                          "bluegreen:services": {"gamma": entry}})
        environment.update_config(lambda config: config.pop("bluegreen:services"))
        urn = f"urn:pulumi:{ENV_STACK}::bluegreen::bluegreen:service:Service::{ENVIRONMENT}-gamma"
        moved = subprocess.run(["pulumi", "state", "move", "--source", ENV_STACK, "--dest",
                                service_stack_name("gamma"), "--yes", urn],
                               cwd=REPO, capture_output=True, text=True)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        changes = target.preview().change_summary
        # At most the new stack's read of the platform stack; nothing of the service itself.
        assert not {op for op, n in changes.items() if n and op not in ("same", "read", "create")}, changes
        assert changes.get("create", 0) <= 1, changes
        target.up()
        environment.up()
        assert container_identity(container) == before
        body, _ = wait_until(lambda: get_json(f"{PROXY}/{ENVIRONMENT}/gamma/"), 30, what="gamma")
        assert body["version"] == "1.0.0" and body["colour"] == "blue"
    finally:
        if target is not None:
            target.remove()
        environment.destroy()
        environment.stack.workspace.remove_stack(ENV_STACK)
        environment.update_config(lambda config: config.pop("bluegreen:services", None))
