"""The delivery pipeline end to end (`python -m bluegreen.delivery`): a real build, push, isolation test,
integration deploy and flip, acceptance tests (in a container of the image), production deploy, gate and flip, on stacks of its
own: a platform stack and two environment stacks that reference it. Then failures at steps 2, 6
and 9 that must leave production untouched, a rollback, a PR preview, `kill -9` of the pipeline
during its production flip (the same command again converges), and a clean destroy.
The tests run in order on the same stacks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from e2e_harness import (LOG_DIR, REPO, Deployment, RequestLoop, consul, container_identity,
                         docker_names, get_json, platform_config, require_environment, state_locks,
                         wait_until)

PLATFORM, INT, PROD = "e2e-pipe-platform", "e2e-pipe-int", "e2e-pipe-prod"
BUILD_STACK = f"build-vizconfig-{INT}"
PORTS = {"consul": 28700, "serf": 28701, "server": 28702, "registry": 28703, "proxy": 28704}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
REGISTRY = f"127.0.0.1:{PORTS['registry']}"
SERVICE_REPO = os.path.join(REPO, "services", "vizconfig")
PIPELINE_LOG = os.path.join(LOG_DIR, "pipeline-runs.log")
RESULTS: dict = {}
IMAGES: dict = {}    # version -> the digest reference the pipeline built
TOKENS: list = []    # the platform stack: its deployer token reads Consul


def env_config(environment: str) -> dict:
    """An environment stack that deploys onto the pipeline platform (StackReference)."""
    platform = platform_config(PORTS, environment)
    return {
        "bluegreen:environment": environment,
        "bluegreen:baseImage": platform["bluegreen:baseImage"],
        "bluegreen:hosts": platform["bluegreen:hosts"],
        "bluegreen:platformStack": f"organization/bluegreen/{PLATFORM}",
    }


class Stacks:
    def __init__(self):
        self.platform = Deployment(PLATFORM, platform_config(PORTS, PLATFORM, environments=(INT, PROD)))
        self.integration = Deployment(INT, env_config(INT))
        self.production = Deployment(PROD, env_config(PROD))
        self.removed = False

    def remove(self) -> None:
        """Destroys the environments, the build stack and the platform (once)."""
        if self.removed:
            return
        self.removed = True
        errors = []
        for step in (self.production.remove, self.integration.remove, _remove_build_stack,
                     self.platform.remove, _remove_local_images):
            try:
                step()
            except Exception as error:  # noqa: BLE001 - remove the rest, then report
                errors.append(f"{getattr(step, '__qualname__', step)}: {error}")
        if errors:
            raise AssertionError("cleanup failed: " + "; ".join(errors))


def _remove_build_stack() -> None:
    from bluegreen.delivery.build import remove
    remove(BUILD_STACK)


def _remove_local_images() -> None:
    """The pipeline's builds stay in the engine's image store; this run's tags go with it."""
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True, check=True).stdout.split()
    mine = [image for image in listed if image.startswith(f"{REGISTRY}/")]
    if mine:
        subprocess.run(["docker", "rmi", "-f", *mine], capture_output=True, check=False)


@pytest.fixture(scope="module")
def stacks():
    require_environment()
    os.makedirs(LOG_DIR, exist_ok=True)
    created = Stacks()
    TOKENS[:] = [created.platform]
    try:
        created.platform.up()
        yield created
    finally:
        try:
            created.remove()
        finally:
            with open(os.path.join(LOG_DIR, "pipeline-results.json"), "w") as handle:
                json.dump(RESULTS, handle, indent=2)


# -- helpers -------------------------------------------------------------------------------------

def pipeline_command(version: str, report: str, repo: str = SERVICE_REPO) -> list[str]:
    return [sys.executable, "-m", "bluegreen.delivery", "pipeline", repo, "--version", version,
            "--integration", INT, "--production", PROD, "--report", report]


def pipeline(version: str, tmp_path, repo: str = SERVICE_REPO) -> tuple[int, str, dict]:
    """Runs the CLI as a user would; returns (exit code, output, report)."""
    report = os.path.join(tmp_path, f"pipeline-{version}.json")
    result = subprocess.run(pipeline_command(version, report, repo), cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    output = result.stdout + result.stderr
    with open(PIPELINE_LOG, "a", encoding="utf-8") as handle:
        handle.write(f"\n===== pipeline {version} (exit {result.returncode})\n{output}")
    with open(report, encoding="utf-8") as handle:
        data = json.load(handle)
    RESULTS[version] = {"exit": result.returncode, "seconds": data.get("totalSeconds"),
                        "steps": {s["number"]: [s["status"], s["seconds"]] for s in data["steps"]}}
    return result.returncode, output, data


def delivery(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "bluegreen.delivery", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    with open(PIPELINE_LOG, "a", encoding="utf-8") as handle:
        handle.write(f"\n===== {' '.join(args)} (exit {result.returncode})\n{result.stdout}{result.stderr}")
    return result


def stable(environment: str) -> str:
    return f"{PROXY}/{environment}/vizconfig/"


def served(environment: str) -> tuple[str, str]:
    body = get_json(stable(environment))
    return body["version"], body["colour"]


def alias(environment: str) -> str:
    """What Consul says is live, read with the platform's deployer token."""
    return consul(TOKENS[0].deployer_token()).get(
        f"{CONSUL}/v1/kv/bluegreen/aliases/{environment}/vizconfig?raw", timeout=3).text


def service_containers(environment: str) -> dict[str, tuple[str, str]]:
    """Every container of vizconfig in an environment -> (id, start time)."""
    return {name: container_identity(name)
            for name in docker_names("container", f"bluegreen-{environment}-vizconfig")}


def production_snapshot() -> tuple[str, dict]:
    return alias(PROD), service_containers(PROD)


def stack_services(name: str) -> dict:
    with open(os.path.join(REPO, "stacks", f"Pulumi.{name}.yaml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["config"]["bluegreen:services"]["vizconfig"]


def edit_stack(name: str, mutate) -> None:
    """Edits stacks/Pulumi.<name>.yaml by hand, as a reviewer's commit would."""
    path = os.path.join(REPO, "stacks", f"Pulumi.{name}.yaml")
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    mutate(data["config"]["bluegreen:services"]["vizconfig"])
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)


def service_copy(tmp_path, change) -> str:
    """A copy of the example service repo with one change (a broken test, a failing check)."""
    target = os.path.join(tmp_path, "vizconfig")
    shutil.copytree(SERVICE_REPO, target, ignore=shutil.ignore_patterns("__pycache__"))
    change(target)
    return target


@contextlib.contextmanager
def delivered_from(repo: str):
    """Both stacks deploy vizconfig from `repo` while the block runs: a service's identity is its
    stack entry, so a changed copy is delivered by pointing the entry at it, as a reviewed change
    of the stack files would (the pipeline refuses any other repo)."""
    originals = {name: stack_services(name)["manifest"] for name in (INT, PROD)}
    for name in originals:
        edit_stack(name, lambda s: s.__setitem__("manifest", os.path.join(repo, "service.yaml")))
    try:
        yield
    finally:
        for name, manifest in originals.items():
            edit_stack(name, lambda s, m=manifest: s.__setitem__("manifest", m))


def container_image(name: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", name],
                          capture_output=True, text=True, check=True).stdout.strip()


def assert_failed_at(code: int, output: str, report: dict, number: int) -> None:
    assert code != 0, output[-2000:]
    assert f"pipeline FAILED at step {number} (" in output, output[-2000:]
    assert report["result"] == "failed"
    assert report["failedStep"]["number"] == number
    statuses = {s["number"]: s["status"] for s in report["steps"]}
    assert statuses[number] == "failed"
    assert all(statuses[n] == "not run" for n in statuses if n > number), statuses


# -- the tests -----------------------------------------------------------------------------------

def test_a_pipeline_delivers_v1_then_v2_to_production(stacks, tmp_path):
    code, output, report = pipeline("1.0.0", tmp_path)
    assert code == 0, output[-3000:]
    assert served(PROD) == ("1.0.0", "blue")
    assert served(INT) == ("1.0.0", "blue")

    live = service_containers(PROD)
    # What serves production is never touched, and its clients see no failure through the whole
    # run. Green records no release yet, so nothing is staged (test_c and test_g stage).
    with RequestLoop(stable(PROD), rate=10, max_requests=3000, max_seconds=300) as client:
        code, output, report = pipeline("2.0.0", tmp_path)
        assert code == 0, output[-3000:]
        wait_until(lambda: served(PROD) == ("2.0.0", "green"), 10, what="2.0.0 from green")
        time.sleep(1)
    assert client.failures == [], client.failures[:5]
    assert {name: after for name, after in service_containers(PROD).items() if name in live} == live
    assert report["staged"] == {}, report["staged"]
    assert served(PROD) == ("2.0.0", "green")
    assert alias(PROD) == "green" and alias(INT) == "green"
    # Every step is reported, in order, with its status and duration; progress was printed.
    assert [s["number"] for s in report["steps"]] == list(range(1, 12))
    statuses = {s["number"]: s["status"] for s in report["steps"]}
    # Integration's deploy and flip are one update (step 4); production's flip is its own.
    assert {n for n, s in statuses.items() if s == "included"} == {3, 5}, statuses
    assert all(statuses[n] == "passed" for n in (1, 2, 4, 6, 7, 8, 9, 10, 11)), statuses
    assert all(isinstance(s["seconds"], float) for s in report["steps"])
    for number in range(1, 12):
        assert f"==> [{number}/11] " in output
    assert report["result"] == "succeeded" and report["failedStep"] is None
    # One digest, pushed once, runs in both environments and is recorded in both stack configs.
    image = IMAGES["2.0.0"] = report["image"]
    assert image.startswith(f"{REGISTRY}/vizconfig@sha256:") and image.endswith(report["digest"])
    assert stack_services(INT)["green"] == {"version": "2.0.0", "image": image}
    assert stack_services(PROD)["green"] == {"version": "2.0.0", "image": image}
    assert container_image(f"bluegreen-{INT}-vizconfig-green-local-0") == image
    assert container_image(f"bluegreen-{PROD}-vizconfig-green-local-0") == image
    production = report["environments"]["production"]
    assert (production["before"]["live"], production["before"]["alias"]) == ("blue", "blue")
    assert (production["after"]["live"], production["after"]["alias"]) == ("green", "green")
    assert production["before"]["blue"]["version"] == "1.0.0"
    # Each flip went into the report with the time its `up` measured: alias write -> proxy serving.
    for stack in (INT, PROD):
        flip = report["flips"][stack]
        assert (flip["from"], flip["to"]) == ("blue", "green")
        assert 0 < flip["flipSeconds"] < 1, flip
    # The old colour keeps running for a rollback; the probe left nothing behind.
    assert get_json(f"{PROXY}/preview/{PROD}/vizconfig/")["version"] == "1.0.0"
    assert docker_names("container", "bluegreen-probe-") == []
    assert docker_names("network", "bluegreen-probe-") == []
    # The acceptance tests ran in the image just built, and the container is gone.
    acceptance = next(s for s in report["steps"] if s["number"] == 6)
    assert acceptance["detail"] == (f"passed against http://172.17.0.1:{PORTS['proxy']}/{INT}/"
                                    f"vizconfig/ in {image}"), acceptance
    assert docker_names("container", "bluegreen-acceptance-") == []


def test_b_failing_image_test_stops_at_step_2(stacks, tmp_path):
    def break_a_test(repo):
        with open(os.path.join(repo, "tests", "test_broken.py"), "w") as handle:
            handle.write("import unittest\n\n\nclass Broken(unittest.TestCase):\n"
                         "    def test_fails(self):\n        self.assertEqual(1, 2)\n")

    before, integration = production_snapshot(), alias(INT)
    repo = service_copy(tmp_path, break_a_test)
    with delivered_from(repo):
        code, output, report = pipeline("3.0.1", tmp_path, repo)
    assert_failed_at(code, output, report, 2)
    assert "the image's tests failed" in output
    assert production_snapshot() == before
    assert alias(INT) == integration
    assert served(PROD) == ("2.0.0", "green")


def test_c_failing_acceptance_tests_stop_at_step_6(stacks, tmp_path):
    # What the command would steal on the deploying machine: the runner's environment and files.
    assert os.environ.get("PULUMI_CONFIG_PASSPHRASE") and os.environ.get("DOCKER_HOST")
    planted = tmp_path / "runner-only.txt"
    planted.write_text("a file of the deploying machine\n")
    probe = ("import os, sys\n"
             "print('variables:', ' '.join(sorted(os.environ)))\n"
             f"print('runner file readable:', os.path.exists({str(planted)!r}))\n"
             "print('base url:', os.environ['BASE_URL'])\n"
             "sys.exit('acceptance: deliberately failing')\n")

    def failing_acceptance(repo):
        path = os.path.join(repo, "service.yaml")
        with open(path) as handle:
            manifest = yaml.safe_load(handle)
        manifest["acceptance"] = {"command": ["python3", "-c", probe]}
        with open(path, "w") as handle:
            yaml.safe_dump(manifest, handle, sort_keys=False)

    before_alias, before = production_snapshot()
    live = {name: identity for name, identity in before.items() if f"-{before_alias}-" in name}
    offline = stack_services(PROD)["blue" if before_alias == "green" else "green"]
    repo = service_copy(tmp_path, failing_acceptance)
    with delivered_from(repo):
        code, output, report = pipeline("3.0.2", tmp_path, repo)
    assert_failed_at(code, output, report, 6)
    assert "deliberately failing" in output
    # It ran in a container of the candidate's image: only the variables it was given (and the
    # image's own), none of the runner's files, integration's stable URI over the Docker bridge.
    [variables] = [line.split()[1:] for line in output.splitlines()
                   if line.strip().startswith("variables:")]
    assert {"BASE_URL", "EXPECTED_VERSION", "SERVICE_NAME"} <= set(variables), variables
    assert not {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_BACKEND_URL", "DOCKER_HOST", "SSH_AUTH_SOCK",
                "PULUMI_HOME", "BLUEGREEN_CACHE"} & set(variables), variables
    assert "runner file readable: False" in output, output[-2000:]
    assert f"base url: http://172.17.0.1:{PORTS['proxy']}/{INT}/vizconfig/" in output, output[-2000:]
    assert docker_names("container", "bluegreen-acceptance-") == []
    # Production's offline colour was staged with the candidate while integration ran, and got
    # its release back when integration failed; the live colour and the alias were never touched.
    assert report["staged"]["restored"] is True, report["staged"]
    assert f"runs {offline['version']} again" in output, output[-2000:]
    assert stack_services(PROD)[report["staged"]["colour"]] == offline
    assert container_image(f"bluegreen-{PROD}-vizconfig-{report['staged']['colour']}-local-0") == offline["image"]
    after_alias, after = production_snapshot()
    assert after_alias == before_alias
    assert {name: after[name] for name in live} == live
    assert served(PROD) == ("2.0.0", "green")
    # Integration is where it failed: it runs the candidate.
    assert served(INT) == ("3.0.2", "blue")


def test_d_rollback_moves_only_the_alias(stacks):
    before = service_containers(PROD)
    result = delivery("rollback", "vizconfig", "--stack", PROD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"the alias bluegreen/aliases/{PROD}/vizconfig names green (2.0.0); rolling back to "
            "1.0.0") in result.stdout
    assert f"alias bluegreen/aliases/{PROD}/vizconfig: green -> blue" in result.stdout
    # The move is recorded as a change of the stack file (what a `git revert` would undo).
    assert f"recorded live: blue (1.0.0) in stacks/Pulumi.{PROD}.yaml" in result.stdout
    wait_until(lambda: served(PROD) == ("1.0.0", "blue"), 10, what="v1 again")
    assert alias(PROD) == "blue"
    assert stack_services(PROD)["live"] == "blue"
    assert service_containers(PROD) == before, "a rollback restarted a container"
    # Nothing left to roll back to in a stack with one colour is an error, not a guess.
    assert delivery("rollback", "nosuch", "--stack", PROD).returncode != 0


def test_e_failing_production_gate_stops_at_step_9(stacks, tmp_path):
    edit_stack(PROD, lambda s: (s.__setitem__("gateTimeout", 10),
                                s["green"].__setitem__("env", {"DB_ADDRESS": "db:1"})))
    live_names = [n for n in service_containers(PROD) if "-green-" not in n]
    before_alias = alias(PROD)
    before = {n: container_identity(n) for n in live_names}
    code, output, report = pipeline("3.0.3", tmp_path)
    assert_failed_at(code, output, report, 9)
    assert f"health gate {PROD}/vizconfig/green did not pass within 10s" in output
    assert f"HTTP GET /health on {PROD}-vizconfig-green-local-0" in output
    assert alias(PROD) == before_alias == "blue"
    assert {n: container_identity(n) for n in live_names} == before
    assert served(PROD) == ("1.0.0", "blue")
    assert stack_services(PROD)["live"] == "blue"
    # Integration passed (its config has no broken env) and serves the candidate.
    assert served(INT) == ("3.0.3", "green")


def test_f_preview_names_the_alias_flip_and_the_image_change(stacks, tmp_path):
    green = stack_services(PROD)["green"]["image"]
    v2 = IMAGES["2.0.0"]
    original = open(os.path.join(REPO, "stacks", f"Pulumi.{PROD}.yaml")).read()
    edit_stack(PROD, lambda s: (s.__setitem__("live", "green"),
                                s.__setitem__("green", {"version": "2.0.0", "image": v2})))
    markdown = os.path.join(tmp_path, "preview.md")
    try:
        result = delivery("preview", "--stack", PROD, "--markdown", markdown)
    finally:
        with open(os.path.join(REPO, "stacks", f"Pulumi.{PROD}.yaml"), "w") as handle:
            handle.write(original)
    text = open(markdown).read()
    assert f"### `{PROD}`" in text, text
    assert f"alias flips: `blue` -> `green` (`bluegreen/aliases/{PROD}/vizconfig`)" in text, text
    short = lambda ref: "sha256:" + ref.rsplit("@sha256:", 1)[1][:12]  # noqa: E731
    assert f"image green on `local`: `{short(green)}` -> `{short(v2)}`" in text, text
    assert f"containers replaced: `bluegreen-{PROD}-vizconfig-green-local-0`" in text, text
    assert "Policies:" in text and "preview failed" not in text, text
    assert result.returncode in (0, 1), result.stderr  # 1: a mandatory policy violation
    # A preview changes nothing.
    assert alias(PROD) == "blue"


def test_g_kill_9_of_the_pipeline_during_the_flip_then_the_same_command_converges(stacks, tmp_path):
    # Production as the pipeline left it before step 9's failure, minus the broken setting.
    edit_stack(PROD, lambda s: (s.pop("gateTimeout", None), s["green"].pop("env", None)))
    assert served(PROD) == ("1.0.0", "blue")
    blue = {n: i for n, i in service_containers(PROD).items() if "-blue-" in n}
    report = os.path.join(tmp_path, "pipeline-killed.json")
    with RequestLoop(stable(PROD), rate=10, max_requests=3000, max_seconds=400) as client, \
            open(PIPELINE_LOG, "a", encoding="utf-8") as log:
        log.write("\n===== pipeline 3.1.0, killed during step 10\n")
        # Its own session: the kill takes the pipeline and every process under it, as a runner's
        # death would (the pulumi CLI, its language host and plugins).
        process = subprocess.Popen(pipeline_command("3.1.0", report), cwd=REPO, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        started, killed, staged = time.monotonic(), None, False
        for line in process.stdout:
            log.write(line)
            staged = staged or "production's offline colour green gets 3.1.0 now" in line
            if line.startswith("==> [10/11] "):
                wait_until(lambda: state_locks(PROD), 60, interval_s=0.05, what="the flip's update")
                time.sleep(1)
                os.killpg(process.pid, signal.SIGKILL)
                killed = time.monotonic()
                break
        process.wait(10)
        log.flush()     # before the re-run appends its own output
        assert killed is not None, "the pipeline ended before its production flip"
        assert staged, "production's green was not staged during integration's steps"
        assert state_locks(PROD), "the killed flip left no lock (the kill missed the update)"
        # The kill lands before or after the alias write: the re-run converges from either.
        moved = alias(PROD) == "green"
        rerun = time.monotonic()
        code, output, data = pipeline("3.1.0", tmp_path)
        converged = time.monotonic()
        assert code == 0, output[-3000:]
        assert served(PROD) == ("3.1.0", "green")
    assert "cleared the lock" in output, output[-3000:]
    state = "live" if moved else "offline"
    assert f"Pulumi.{PROD}.yaml: vizconfig.green runs 3.1.0 already ({state})" in output, output[-3000:]
    assert alias(PROD) == "green" and stack_services(PROD)["live"] == "green"
    statuses = {s["number"]: s["status"] for s in data["steps"]}
    # Moved: the re-run's step 8 converged the flip; not moved: it gates and flips itself.
    expected = "included" if moved else "passed"
    assert statuses[9] == statuses[10] == expected, (moved, statuses)
    # The old release keeps running, untouched, for a rollback.
    assert {n: i for n, i in service_containers(PROD).items() if "-blue-" in n} == blue
    assert client.failures == [], client.failures[:5]
    RESULTS["killed-during-flip"] = {
        "requests": len(client.results), "failed_requests": len(client.failures),
        "killed_after_s": round(killed - started, 2), "traffic_moved_before_the_kill": moved,
        "rerun_converged_s": round(converged - rerun, 2)}


def test_z_destroy_leaves_nothing(stacks):
    stacks.remove()
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, "bluegreen-e2e-pipe-") == [], kind
        assert docker_names(kind, "bluegreen-probe-") == [], kind
        assert docker_names(kind, "bluegreen-acceptance-") == [], kind
