"""ServiceImage: build an image on the build host, push it to the in-house registry, and expose
its digest reference (repository@sha256:...), the only form the platform runs."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from bluegreen.components.model.manifest import BuildSpec, Dependency, Manifest
from bluegreen.components.naming import context_digest, digest_reference


@dataclass(frozen=True)
class ServiceImageArgs:
    repository: pulumi.Input[str]  # 127.0.0.1:5000/vizconfig
    tag: str                     # the version
    build: BuildSpec
    provider: docker.Provider    # the build host's engine
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    exclude_files: tuple[str, ...] = ()  # in the context but not part of the image (the manifest)
    # The provider's buildx path builds on the default engine (DOCKER_HOST), whatever the
    # provider's host; an engine reached over ssh:// or tcp:// must use the legacy builder.
    legacy_builder: bool = False

    def __post_init__(self):
        if not self.tag or "/" in self.tag or ":" in self.tag:
            raise ValueError(f"image tag {self.tag!r} must be a plain version string")
        if isinstance(self.repository, str) and (
                "@" in self.repository or ":" in self.repository.rsplit("/", 1)[-1]):
            raise ValueError(f"repository {self.repository!r} must not carry a tag or digest")


def service_image_args(manifest: Manifest, version: str, repository: pulumi.Input[str],
                       provider: docker.Provider, base_image: str,
                       legacy_builder: bool = False) -> ServiceImageArgs:
    """How a service's own image is built, for the stacks and the pipeline alike."""
    return ServiceImageArgs(
        repository=repository, tag=version, build=manifest.build, provider=provider,
        build_args={"VERSION": version, "BASE_IMAGE": base_image},
        labels={"bluegreen.service": manifest.name, "bluegreen.version": version},
        exclude_files=(manifest.path,), legacy_builder=legacy_builder)


def dependency_image_args(dependency: Dependency, repository: pulumi.Input[str],
                          provider: docker.Provider, base_image: str,
                          legacy_builder: bool = False) -> ServiceImageArgs:
    """How a dependency given as `build:` is built: tagged by its context's content hash."""
    build = dependency.build
    if build is None:
        raise ValueError(f"dependency {dependency.alias} gives an image, not a build: nothing to build")
    return ServiceImageArgs(
        repository=pulumi.Output.concat(repository, "-", dependency.alias),
        tag=context_digest(build.context)[:12], build=build,
        provider=provider, build_args={"BASE_IMAGE": base_image}, legacy_builder=legacy_builder)


def build_failure(image: str, build: BuildSpec, build_args: dict[str, str], errors: list[str]) -> str:
    """What a failed build says beside the provider's error: the Dockerfile, its context, and how
    to see the whole build output."""
    dockerfile = os.path.join(build.context, build.dockerfile)
    arguments = "".join(f" --build-arg {shlex.quote(f'{k}={v}')}" for k, v in sorted(build_args.items()))
    # The provider's error (newest first) as one line, without its "1 error occurred:" framing.
    lines = [line.strip().lstrip("*").strip() for line in (errors[0] if errors else "").splitlines()]
    cause = "; ".join(line for line in lines if line and not re.fullmatch(r"\d+ errors? occurred:", line))
    return (f"building {image} from {dockerfile} (context {build.context}) failed: "
            f"{cause or 'see the error above'}. Fix the Dockerfile or the files it uses, then run "
            f"`pulumi up` again; the same build with its whole output: "
            f"docker build -f {shlex.quote(dockerfile)}{arguments} {shlex.quote(build.context)}")


class ServiceImage(pulumi.ComponentResource):
    """A built and pushed image; `reference` is repository@sha256:<registry digest>."""

    reference: pulumi.Output[str]
    digest: pulumi.Output[str]

    def __init__(self, name: str, args: ServiceImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:service:ServiceImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        tagged = pulumi.Output.concat(args.repository, ":", args.tag)
        # The context hash makes a source change rebuild even when the version string stays.
        source = context_digest(args.build.context, exclude_files=args.exclude_files)

        def explain(failure: pulumi.ErrorHookArgs) -> bool:
            if failure.failed_operation != "delete":
                image = (failure.new_inputs or {}).get("name") or name
                # Logged without `resource=`: that would resolve the URN asynchronously, and the
                # update ends before it does.
                pulumi.log.error(build_failure(image, args.build, args.build_args, failure.errors))
            return False  # a build that failed fails again: no retry

        built = docker.RemoteImage(
            f"{name}-build",
            name=tagged,
            build=docker.RemoteImageBuildArgs(
                context=args.build.context,
                dockerfile=args.build.dockerfile,
                build_args=args.build_args,
                label={**args.labels, "bluegreen.source": source},
                use_legacy_builder=args.legacy_builder or None,
            ),
            triggers={"source": source},
            keep_locally=True,
            # A tag is built once: a later change of the sources never rebuilds it (a release is
            # immutable; a new version is a new tag, hence a new resource).
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                ignore_changes=["build", "triggers"], hooks=pulumi.ResourceHookBinding(
                    on_error=[pulumi.ErrorHook(f"{name}-build-failed", explain)]))),
        )
        pushed = docker.RegistryImage(
            f"{name}-push",
            name=built.name,
            keep_remotely=True,
            triggers={"image": built.image_id},
            opts=child,
        )
        self.digest = pushed.sha256_digest
        self.reference = pulumi.Output.all(args.repository, pushed.sha256_digest).apply(
            lambda values: digest_reference(*values))
        self.register_outputs({"reference": self.reference, "digest": self.digest})
