"""Step 1 (and 3): build the service image and push it to the in-house registry, as an inline
Automation API program on a stack of its own (`build-<service>-<integration stack>`, same
backend). It instantiates components.service.service_image.ServiceImage, the component the environment
stacks build with, so the pipeline's image is made exactly as `pulumi up` would make it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pulumi
from pulumi import automation as auto

from bluegreen.components.model.config import Host
from bluegreen.components.model.manifest import Manifest
from bluegreen.components.platform.docker_host import host_providers, needs_legacy_builder
from bluegreen.components.service.service_image import ServiceImage, dependency_image_args, service_image_args

from .stacks import POLICY_PACK, error_summary
from .steps import StepFailed

PROJECT = "bluegreen-build"


@dataclass(frozen=True)
class BuildRequest:
    manifest: Manifest
    version: str
    registry: str                  # host:port, from the platform stack's outputs
    host: Host                     # whose engine builds and pushes
    base_image: str
    stack: str                     # the build stack's name
    registry_username: str = field(default="", repr=False)   # the platform's `credentials`
    registry_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class BuildResult:
    image: str                     # repository@sha256:...
    digest: str
    dependencies: dict[str, str] = field(default_factory=dict)   # alias -> reference
    seconds: float = 0.0


def build_stack_name(service: str, integration: str) -> str:
    return f"build-{service}-{integration}"


def program(request: BuildRequest):
    """The inline program: one ServiceImage for the service, one per dependency built from source
    (named and tagged as components.service.Service names them, so the stacks reuse the push)."""
    manifest = request.manifest

    def run() -> None:
        provider = host_providers(request.stack, {request.host.name: request.host},
                                  request.registry, pulumi.Output.secret(request.registry_username),
                                  pulumi.Output.secret(request.registry_password))[request.host.name]
        repository = f"{request.registry}/{manifest.name}"
        legacy_builder = needs_legacy_builder(request.host)
        image = ServiceImage(f"{manifest.name}-image", service_image_args(
            manifest, request.version, repository, provider, request.base_image, legacy_builder))
        dependencies: dict[str, pulumi.Input[str]] = {}
        for dependency in manifest.dependencies:
            if dependency.image is not None:   # a manifest gives an image or a build, never both
                dependencies[dependency.alias] = dependency.image
                continue
            dependencies[dependency.alias] = ServiceImage(
                f"{manifest.name}-{dependency.alias}-image", dependency_image_args(
                    dependency, repository, provider, request.base_image, legacy_builder)).reference
        pulumi.export("image", image.reference)
        pulumi.export("digest", image.digest)
        pulumi.export("dependencies", dependencies)

    return run


def workspace_stack(name: str, run=None) -> auto.Stack:
    return auto.create_or_select_stack(
        stack_name=name, project_name=PROJECT, program=run or (lambda: None),
        opts=auto.LocalWorkspaceOptions(project_settings=auto.ProjectSettings(
            name=PROJECT, runtime="python",
            description="Images built by the delivery pipeline (one stack per service and platform)")))


def build(request: BuildRequest, log_path: str | None = None) -> BuildResult:
    start = time.monotonic()
    stack = workspace_stack(request.stack, program(request))
    handle = open(log_path, "a", encoding="utf-8") if log_path else None
    try:
        if handle:
            handle.write(f"\n===== {request.stack}: up (build {request.version}) {time.strftime('%H:%M:%S')}\n")
        result = stack.up(color="never", policy_packs=[POLICY_PACK],
                          on_output=(lambda line: handle.write(line + "\n")) if handle else None)
    except auto.CommandError as error:
        raise StepFailed(f"building {request.manifest.name} {request.version} failed: "
                         f"{error_summary(str(error))}") from None
    finally:
        if handle:
            handle.close()
    outputs = {key: value.value for key, value in result.outputs.items()}
    return BuildResult(image=outputs["image"], digest=outputs["digest"],
                       dependencies=dict(outputs.get("dependencies") or {}),
                       seconds=round(time.monotonic() - start, 2))


def remove(name: str) -> None:
    """Forgets a build stack (its images stay in the registry and on the build host)."""
    stack = workspace_stack(name)
    stack.destroy(color="never")
    stack.workspace.remove_stack(name)
