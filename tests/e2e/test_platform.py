"""The local platform works, not merely runs: Consul, the registry and the proxy (issue: toolchain
and local platform). Real `pulumi up`/`destroy` through the Automation API."""

from __future__ import annotations

import subprocess
import tempfile
import time

import pytest
import requests

from e2e_harness import (Deployment, consul, docker_names, platform_config, require_environment,
                         wait_until)

STACK = "e2e-platform"
PORTS = {"consul": 28500, "serf": 28301, "server": 28300, "registry": 28000, "proxy": 28080}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"


@pytest.fixture(scope="module")
def platform():
    require_environment()
    deployment = Deployment(STACK, platform_config(PORTS, STACK))
    try:
        outputs = deployment.up()
        yield deployment, outputs
    finally:
        deployment.remove()


def test_outputs_name_the_published_addresses(platform):
    _, outputs = platform
    assert outputs["consul"] == CONSUL
    assert outputs["registry"] == f"127.0.0.1:{PORTS['registry']}"
    assert outputs["proxy"] == PROXY
    assert set(outputs["credentials"]) == {"consulDeployerTokens", "consulIssuerToken",
                                           "registryUsername", "registryPassword"}
    assert set(outputs["credentials"]["consulDeployerTokens"]) == {STACK}


def deployer(platform) -> requests.Session:
    return consul(platform[1]["credentials"]["consulDeployerTokens"][STACK])


def test_consul_has_a_leader_and_kv_reads_back(platform):
    leader = requests.get(f"{CONSUL}/v1/status/leader", timeout=3).json()
    assert leader.endswith(f":{PORTS['server']}")
    value = f"written at {time.time()}"
    key = f"{CONSUL}/v1/kv/bluegreen/config/{STACK}/probe/written"
    assert deployer(platform).put(key, data=value, timeout=3).json() is True
    assert deployer(platform).get(f"{key}?raw", timeout=3).text == value
    # Anonymous requests are denied (default-deny ACLs).
    assert requests.get(f"{key}?raw", timeout=3).status_code == 403
    deployer(platform).delete(key, timeout=3)


def test_image_pushed_to_registry_pulls_back_by_digest(platform):
    registry = f"127.0.0.1:{PORTS['registry']}"
    credentials = platform[1]["credentials"]
    tagged = f"{registry}/e2e/probe:1"
    image_id = _docker("image", "inspect", "--format", "{{.Id}}", "bluegreen/base:bookworm")
    with tempfile.TemporaryDirectory(prefix="bluegreen-docker-config-") as config:
        # The CLI's credentials stay in a throwaway config directory.
        login = subprocess.run(["docker", "--config", config, "login", "-u",
                                credentials["registryUsername"], "--password-stdin", registry],
                               input=credentials["registryPassword"], capture_output=True, text=True)
        assert login.returncode == 0, login.stderr
        _docker("tag", "bluegreen/base:bookworm", tagged)
        _docker("--config", config, "push", tagged)
        digest_ref = next(d for d in _docker("image", "inspect", "--format",
                                             "{{range .RepoDigests}}{{.}} {{end}}", tagged).split()
                          if d.startswith(registry))
        _docker("rmi", tagged)  # drops the digest reference too: the pull must ask the registry
        _docker("--config", config, "pull", digest_ref)
    assert _docker("image", "inspect", "--format", "{{.Id}}", digest_ref) == image_id
    _docker("rmi", digest_ref)


def test_kv_change_rerenders_the_proxy_within_seconds(platform):
    path = f"{PROXY}/{STACK}/ghost/"
    kv = deployer(platform)
    assert requests.get(path, timeout=3).status_code == 404
    start = time.monotonic()
    kv.put(f"{CONSUL}/v1/kv/bluegreen/aliases/{STACK}/ghost", data="blue", timeout=3)
    # The route exists now; with no instance behind it nginx answers 502.
    wait_until(lambda: requests.get(path, timeout=3).status_code == 502, 5, what="ghost route")
    print(f"\nKV write -> proxy route: {time.monotonic() - start:.2f}s")
    kv.delete(f"{CONSUL}/v1/kv/bluegreen/aliases/{STACK}/ghost", timeout=3)
    wait_until(lambda: requests.get(path, timeout=3).status_code == 404, 5, what="route removal")


def test_a_render_that_fails_nginx_t_never_replaces_the_good_config(platform):
    good = f"{PROXY}/{STACK}/kept/"
    kv = deployer(platform)
    kv.put(f"{CONSUL}/v1/kv/bluegreen/aliases/{STACK}/kept", data="blue", timeout=3)
    wait_until(lambda: requests.get(good, timeout=3).status_code == 502, 5, what="kept route")
    # A second service on the same route (written past the model, which keeps routes unique)
    # renders `location /<env>/kept/` twice: every name passes the templates' guards, and nginx -t
    # refuses the duplicate location.
    kv.put(f"{CONSUL}/v1/kv/bluegreen/aliases/{STACK}/broken", data="blue", timeout=3)
    kv.put(f"{CONSUL}/v1/kv/bluegreen/routes/{STACK}/broken", data="kept", timeout=3)
    time.sleep(3)
    logs = subprocess.run(["docker", "logs", f"bluegreen-{STACK}-proxy"], capture_output=True,
                          text=True).stderr
    assert "rejected by nginx -t" in logs
    assert requests.get(f"{PROXY}/healthz", timeout=3).status_code == 200
    assert requests.get(good, timeout=3).status_code == 502
    for key in (f"aliases/{STACK}/broken", f"routes/{STACK}/broken", f"aliases/{STACK}/kept"):
        kv.delete(f"{CONSUL}/v1/kv/bluegreen/{key}", timeout=3)


def test_destroy_leaves_no_container_network_or_volume(platform):
    deployment, _ = platform
    assert docker_names("container", f"bluegreen-{STACK}-")
    deployment.destroy()
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, f"bluegreen-{STACK}-") == [], kind


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()
