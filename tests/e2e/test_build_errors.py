"""A Dockerfile that fails to build: the real `pulumi up` (the pipeline's build step, an Automation
API program around ServiceImage) fails naming the Dockerfile and its context, and says how to fix
it and see the whole build output."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from e2e_harness import LOG_DIR, require_environment

from bluegreen.components.model.config import Host
from bluegreen.components.model.manifest import load_manifest
from bluegreen.delivery.build import BuildRequest, build, remove
from bluegreen.delivery.steps import StepFailed

STACK = "e2e-build-broken"


@pytest.fixture
def broken_repo():
    directory = tempfile.mkdtemp(prefix="bluegreen-broken-")
    with open(os.path.join(directory, "Dockerfile"), "w") as handle:
        handle.write("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo 'failing on purpose' && false\n")
    with open(os.path.join(directory, "service.yaml"), "w") as handle:
        handle.write("name: broken\ndescription: fails to build\nport: 8000\n")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_a_failing_build_names_the_dockerfile_and_the_fix(broken_repo):
    require_environment()
    os.makedirs(LOG_DIR, exist_ok=True)
    log = os.path.join(LOG_DIR, f"{STACK}.log")
    request = BuildRequest(
        manifest=load_manifest(os.path.join(broken_repo, "service.yaml")), version="1.0.0",
        registry="127.0.0.1:15999",  # never reached: the build fails before the push
        host=Host("local", docker=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
                  consul="http://127.0.0.1:8500"),
        base_image=os.environ.get("BLUEGREEN_BASE_IMAGE", "bluegreen/base:bookworm"), stack=STACK,
        registry_username="ci", registry_password="never-used-password")
    try:
        with pytest.raises(StepFailed) as raised:
            build(request, log_path=log)
    finally:
        remove(STACK)
    dockerfile = os.path.join(broken_repo, "Dockerfile")
    expected = f"building 127.0.0.1:15999/broken:1.0.0 from {dockerfile} (context {broken_repo}) failed: "
    message = str(raised.value)
    assert expected in message
    assert "Fix the Dockerfile or the files it uses" in message
    # The whole `pulumi up` transcript has the same line, with the command that shows the output.
    with open(log, encoding="utf-8") as handle:
        transcript = handle.read()
    assert expected in transcript
    assert (f"docker build -f {dockerfile} --build-arg BASE_IMAGE={request.base_image} "
            f"--build-arg VERSION=1.0.0 {broken_repo}") in transcript
