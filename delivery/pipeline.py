"""`pipeline`: a service repo through the seed's eleven steps, on the Automation API.

1-3   build the image with ServiceImage on an inline build stack, push it, keep its digest; test it
      in isolation (test.command with no network, then a health probe with its linked dependencies)
4-5   integration: the offline colour gets version + digest and `live` moves to it in stack
      config, one `up` (the new colour's gate blocks the alias until it passes, then the alias
      follows); a service whose preview traffic is judged first (gate.previewTraffic) gets two
6     the manifest's acceptance.command against integration's stable URI (BASE_URL), in a throwaway
      container of the service's image on integration's build host
7     configuration upload: the stacks' `up` writes the manifest's config to Consul KV
8-10  production: the offline colour's deploy (started while 4-6 run when delivery/staging.py
      allows it), an explicit wait for its checks (the gate the flip will re-check), then the
      flip as a change and an update of its own
11    production's stable URI answers with the new version

Every config change goes through `stack.set_config(..., path=True)`, so it lands in
stacks/Pulumi.<stack>.yaml like a hand edit would: the flip is its own change, and reverting it
plus `pulumi up` is a rollback. Nothing touches production's alias or its live containers before
step 10."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import time
from dataclasses import dataclass

import requests

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul.checks import wait_for_gate
from bluegreen.components.consul.records import read_service_records
from bluegreen.components.model.audit import Operator
from bluegreen.components.model.config import ServiceConfig, StackConfig
from bluegreen.components.model.entry import check_entry, same_file
from bluegreen.components.model.manifest import Manifest, load_manifest
from bluegreen.components.model.release import Release, suggest_next
from bluegreen.components.model.live import serving_colour
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import config_prefix, context_digest, offline_colour
from bluegreen.components.model.credentials import credential

from . import REPO, audit
from .acceptance import (AcceptanceRun, acceptance_name, container_url, registry_refusal,
                         run_acceptance)
from .build import BuildRequest, BuildResult, build, build_stack_name
from .isolation import health_probe, run_tests, tail
from .lock import DeployLock, LockHeld, service_lock
from .preview_gate import check_preview
from .stacks import (
    EnvStack, allowed_registries, error_summary, platform_outputs, platform_owner,
    policy_config_file, relative_to_repo, short_name, stack_for_service
)
from .staging import Staging, stage_plan
from .steps import INCLUDED, SKIPPED, PipelineFailed, Run, StepFailed, write_report

VERSION = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
ONLINE_TIMEOUT_S = 20


@dataclass(frozen=True)
class PipelineArgs:
    service_repo: str
    version: str
    integration: str = "integration"
    production: str = "production"
    report: str | None = None
    lock_wait_s: float = 0.0      # how long to wait for a service's deploy lock (0: refuse)


def deployed(stack: EnvStack, service: str) -> ServiceConfig:
    """The service's entry in `stack`, which step 4 or 8 wrote if it was not there."""
    settings = stack.service(service)
    if settings is None:
        raise StepFailed(f"stack {stack.name} does not deploy {service}")
    return settings


def default_report(service: str, version: str) -> str:
    return os.path.join(REPO, "reports", f"pipeline-{service}-{version}.json")


class Pipeline:
    def __init__(self, args: PipelineArgs, manifest: Manifest, out=None, who: Operator | None = None):
        self.args = args
        self.manifest = manifest
        self.service = manifest.name
        self.version = args.version
        self.out = out or sys.stdout
        self.run = Run(out=self.out)
        self.report_path = args.report or default_report(self.service, args.version)
        self.log_path = os.path.splitext(self.report_path)[0] + ".log"
        self.build: BuildResult | None = None
        self.build_engine: str | None = None
        self.environments: dict[str, dict] = {}
        self.urls: dict[str, str] = {}
        self.flips: dict[str, dict] = {}
        self.who = who or audit.operator(f"pipeline {args.service_repo} --version {args.version}")
        self.trails: dict[str, audit.Trail] = {}
        self.staged: dict = {}       # production's offline colour, when staged during integration

    # -- helpers
    def _say(self, text: str) -> None:
        self.run.say(text)

    def _built(self) -> BuildResult:
        """Step 1's result: the steps after it run once it succeeded."""
        if self.build is None:
            raise StepFailed(f"{self.service} {self.version} was not built: step 1 comes first")
        return self.build

    def _snapshot(self, role: str, stack: EnvStack, when: str) -> None:
        try:
            state = stack.colour_state(self.service).as_dict()
        except Exception as error:  # noqa: BLE001 - the report says what could not be read
            state = {"error": str(error)}
        entry = self.environments.setdefault(role, {"stack": stack.name})
        entry[when] = state

    def _offline_plan(self, stack: EnvStack, say=None) -> tuple[str, str | None, dict]:
        """(the colour this release goes to, the live colour or None on a first deploy, the
        stack config changes that put it there); `say` prints what it found (default: _say)."""
        say = say or self._say
        settings = stack.service(self.service)
        image = self._built().image
        if settings is None:
            colour = "blue"
            say(f"first deploy of {self.service} on {stack.name}: {colour} goes live in this up "
                "(its gate blocks it)")
            return colour, None, {"manifest": relative_to_repo(self.manifest.path), "live": colour,
                                  f"{colour}.version": self.version, f"{colour}.image": image}
        if (running := colour_running(settings, self.version, image)) is not None:
            # A run of this release ended early (killed, say): its colour gets no new deploy,
            # and the live colour is never touched; the `up` finishes what that run left.
            live = self._serving(stack, settings)
            say(f"stacks/Pulumi.{stack.name}.yaml: {self.service}.{running} runs {self.version} "
                f"already ({'live' if running == live else 'offline'}); pulumi up converges it")
            return running, live, {}
        live = self._serving(stack, settings)
        colour = offline_colour(live)
        say(f"stacks/Pulumi.{stack.name}.yaml: {self.service}.{colour} = {self.version} "
            f"@ {image.rsplit('@', 1)[-1][:19]}…")
        return colour, live, {f"{colour}.version": self.version, f"{colour}.image": image}

    def _deploy_offline(self, stack: EnvStack, label: str,
                        plan: tuple[str, str | None, dict]) -> tuple[str, str | None, dict]:
        """Records version + digest for the offline colour (`plan`: see _offline_plan), `up`.
        Returns (colour, the live colour before or None on a first deploy, outputs)."""
        colour, live, changes = plan
        if changes:
            stack.set_service(self.service, changes)
        outputs = self._offline_outputs(stack, colour, live, stack.up(f"{label}: {colour} {self.version}"))
        return colour, live, outputs

    def _offline_outputs(self, stack: EnvStack, colour: str, live: str | None, outputs: dict) -> dict:
        """An offline deploy's outputs, after noting its URIs (the preview one is printed)."""
        self._outputs_of(stack, outputs)
        preview = outputs["services"][self.service].get("previewUrl")
        if live not in (None, colour) and preview:
            self._say(f"{colour} runs {self.version}, offline: {preview}")
        return outputs

    def _outputs_of(self, stack: EnvStack, outputs: dict) -> dict:
        """An `up`'s outputs, after noting the service's stable URI there."""
        self.urls[stack.name] = outputs["services"][self.service]["url"]
        return outputs

    def _serving(self, stack: EnvStack, settings: ServiceConfig) -> str:
        """The colour the alias names (the stack file's `live:` only before the first flip); a
        stack file that asks otherwise is put back in line first, since the offline colour is
        the one the alias does not name."""
        alias = serving_colour(stack.colour_state(self.service).alias)
        if alias is None:
            return settings.live
        if alias != settings.live:
            stack.set_service(self.service, {"live": alias})
            self._say(f"stacks/Pulumi.{stack.name}.yaml asked live: {settings.live}, but the alias "
                      f"names {alias}, which serves: recorded live: {alias} before deploying")
        return alias

    def _flip(self, stack: EnvStack, colour: str, live: str, deploy: dict | None = None) -> dict:
        """`live` -> colour, `up` (the gate blocks, the alias flips, and the up proves that the
        proxy serves `colour`); `deploy`: the offline colour's changes, made in the same `up`.
        A failed flip puts `live` back in the stack config, which then again matches the alias
        that stayed (or was put back). A service that asks for it has its preview traffic on
        `colour` judged first (gate.previewTraffic)."""
        refusal, judged = check_preview(stack.config(), deployed(stack, self.service), colour)
        if judged:
            self._say(judged)
        if refusal:
            self._trail(stack).record("failed", self.service, before=live, after=colour,
                                      version=self.version, reason=refusal)
            raise StepFailed(f"{refusal}; the alias stays on {live}")
        stack.set_service(self.service, {**(deploy or {}), "live": colour})
        self._say(f"stacks/Pulumi.{stack.name}.yaml: {self.service}.live = {colour} (was {live}); pulumi up")
        try:
            outputs = self._outputs_of(stack, stack.up(f"flip {self.service} to {colour}"))
        except StepFailed as error:
            stack.set_service(self.service, {"live": live})
            self._trail(stack).record("failed", self.service, before=live, after=colour,
                                      version=self.version, reason=str(error))
            raise StepFailed(f"{error}; the alias stays on {live} and stacks/Pulumi.{stack.name}.yaml "
                             f"says live: {live} again") from None
        self.flips[stack.name] = flip_record(outputs, self.service, live, colour)
        self._trail(stack).record("flip", self.service, before=live, after=colour,
                                  version=self.version, reason="pipeline flip")
        return outputs

    def _trail(self, stack: EnvStack) -> audit.Trail:
        if stack.name not in self.trails:
            self.trails[stack.name] = audit.Trail.of(stack, self.service, self.who, self.out)
        return self.trails[stack.name]

    def _locked(self, stack: EnvStack) -> DeployLock:
        """The service's deploy lock in the stack's environment, taken (a refusal is audited)."""
        lock = service_lock(stack, self.service, self.who, self.args.lock_wait_s, self.out)
        try:
            lock.acquire()
        except LockHeld as error:
            self._trail(stack).record("refused", self.service, reason=str(error))
            raise StepFailed(f"REFUSED: {error}") from None
        return lock

    def _wait_online(self, url: str, colour: str) -> float:
        start, last = time.monotonic(), "no answer yet"
        for _ in range(int(ONLINE_TIMEOUT_S / 0.2) + 1):
            try:
                body = requests.get(url, timeout=3).json()
                if body.get("version") == self.version and body.get("colour") == colour:
                    return time.monotonic() - start
                last = f"version {body.get('version')} from {body.get('colour')}"
            except (requests.RequestException, ValueError) as error:
                last = type(error).__name__
            if time.monotonic() - start > ONLINE_TIMEOUT_S:
                break
            time.sleep(0.2)
        raise StepFailed(f"{url} did not serve {self.version} from {colour} within "
                         f"{ONLINE_TIMEOUT_S}s (last: {last})")

    # -- the steps
    def execute(self) -> int:
        run, args = self.run, self.args
        print(f"pipeline: {self.service} {self.version} from {self.manifest.directory}\n"
              f"          integration stack {args.integration}, production stack {args.production}\n"
              f"          log {os.path.relpath(self.log_path)}", file=self.out, flush=True)
        try:
            if args.integration == args.production:
                raise StepFailed("integration and production must be different stacks")
            # A service stack of the named environment stack, when one deploys the service.
            integration = EnvStack(stack_for_service(args.integration, self.service), self.log_path)
            production = EnvStack(stack_for_service(args.production, self.service), self.log_path)
            int_config, prod_config = integration.config(), production.config()
            for config in (int_config, prod_config):
                check_deployed_as(config, self.manifest)
        except Exception as error:  # noqa: BLE001 - a missing stack, invalid config, no CLI
            print(f"pipeline: cannot start: {error_summary(str(error))}", file=self.out, flush=True)
            write_report(self.report_path, self.run.report(**self._facts(), error=str(error)))
            return 2
        self.environments = {
            "integration": {"stack": integration.name, "environment": int_config.environment},
            "production": {"stack": production.name, "environment": prod_config.environment}}
        self._snapshot("integration", integration, "before")
        self._snapshot("production", production, "before")
        try:
            self._steps(integration, production, int_config)
        except PipelineFailed as failure:
            step = failure.step
            self._snapshot("integration", integration, "after")
            self._snapshot("production", production, "after")
            write_report(self.report_path, run.report(**self._facts()))
            untouched = "" if step.number > 10 else (
                f"; production ({production.name}) keeps its alias and live containers")
            print(f"pipeline FAILED at step {step.number} ({step.name}){untouched}.\n"
                  f"report: {os.path.relpath(self.report_path)}", file=self.out, flush=True)
            return 1
        self._snapshot("integration", integration, "after")
        self._snapshot("production", production, "after")
        write_report(self.report_path, run.report(**self._facts()))
        print(f"pipeline succeeded: {self.service} {self.version} is live on {production.name} at "
              f"{self.urls.get(production.name)} after {run.elapsed():.1f}s\n"
              f"report: {os.path.relpath(self.report_path)}", file=self.out, flush=True)
        return 0

    def _facts(self) -> dict:
        return {
            "service": self.service,
            "version": self.version,
            "serviceRepo": self.manifest.directory,
            "image": self.build.image if self.build else None,
            "digest": self.build.digest if self.build else None,
            "dependencies": self.build.dependencies if self.build else {},
            "stacks": {"build": build_stack_name(self.service, short_name(self.args.integration)),
                       "integration": short_name(self.args.integration),
                       "production": short_name(self.args.production)},
            "environments": self.environments,
            "urls": self.urls,
            "flips": self.flips,
            "staged": self.staged,
            "log": self.log_path,
        }

    def _steps(self, integration: EnvStack, production: EnvStack, int_config) -> None:
        run, manifest = self.run, self.manifest

        with run.step(1) as step:
            platform, owner = platform_outputs(int_config), platform_owner(int_config)
            host = int_config.hosts[int_config.build_host]
            released = self._release(int_config, integration.deployer_token())
            request = BuildRequest(manifest=manifest, version=self.version,
                                   registry=platform["registry"], host=host,
                                   registry_username=credential(platform.get("credentials"),
                                                                "registryUsername", owner),
                                   registry_password=credential(platform.get("credentials"),
                                                                "registryPassword", owner),
                                   base_image=int_config.base_image,
                                   stack=build_stack_name(self.service, integration.name))
            self._say(f"ServiceImage on stack {request.stack}: {request.registry}/{self.service}:"
                      f"{self.version} built by host {host.name}")
            self.build = build(request, self.log_path)
            if released is not None and released.reference != self.build.image:
                # Same sources, another digest (a build that is not byte-for-byte repeatable):
                # the release keeps the digest it was first made with.
                self._say(f"{self.version} is released as {released.reference}; deploying that")
                self.build = dataclasses.replace(self.build, image=released.reference,
                                                 digest=released.reference.rsplit("@", 1)[1])
            self.build_engine = host.docker
            step.detail = self.build.image
            self._say(self.build.image)

        with run.step(2) as step:
            engine = self.build_engine
            output = run_tests(manifest, self.build.image, engine=engine)
            self._say(tail(output, 4))
            probe = health_probe(manifest, self.build.image, self.build.dependencies, self.version,
                                 engine=engine)
            self._say(probe)
            step.detail = probe

        run.record(3, INCLUDED, f"pushed by step 1 (ServiceImage's RegistryImage); deploys use "
                                f"the digest {self.build.digest}")
        # Each environment's deploy lock is held while the pipeline works on it, not during the build.
        with contextlib.ExitStack() as held_production:
            staging = self._stage_production(production, held_production)
            with contextlib.ExitStack() as held:
                try:
                    self._integration_steps(integration, held)
                except PipelineFailed:
                    self._unstage(staging)
                    raise
            self._production_steps(production, held_production, staging)

    def _stage_production(self, production: EnvStack, held: contextlib.ExitStack) -> Staging | None:
        """Step 8 started now, in a thread, when staging.stage_plan allows it and production's
        deploy lock is free; else None (step 8 then runs after integration's steps)."""
        try:
            colour, live, changes = self._offline_plan(production, say=lambda _: None)
            _, drift = self._config_drift(production)
            plan = stage_plan(production.service(self.service), colour, live, changes, drift)
            if plan is None:
                return None
            lock = service_lock(production, self.service, self.who, 0.0, self.out)
            lock.acquire()
        except Exception:  # noqa: BLE001 - a held lock, Consul unreachable: step 8 meets it in its turn, and names it
            return None
        held.callback(lock.release)
        self._say(f"production's offline colour {colour} gets {self.version} now, while integration's "
                  f"steps run (step 8, staged; put back to {plan.restore_version} if "
                  "integration fails)")
        self.staged = {"colour": colour, "restore": plan.restore}
        return Staging(production, self.service, plan, f"production: {colour} {self.version}").start()

    def _unstage(self, staging: Staging | None) -> None:
        """Integration failed: the staged colour gets its earlier release back."""
        if staging is None:
            return
        try:
            self._say(staging.restore())
            self.staged["restored"] = True
        except Exception as error:  # noqa: BLE001 - said, and kept in the report
            self.staged["restored"] = False
            self._say(f"could not put production's {staging.plan.colour} back: {error_summary(str(error))}; "
                      f"set {staging.plan.restore} in its stack file and run pulumi up")

    def _integration_steps(self, integration: EnvStack, held: contextlib.ExitStack) -> None:
        run, manifest = self.run, self.manifest
        with run.step(4) as step:
            held.callback(self._locked(integration).release)
            colour, live, changes = plan = self._offline_plan(integration)
            if live is not None and flips_with_deploy(deployed(integration, self.service), live, colour):
                # Integration deploys and flips in one `up`: the new colour's gate holds the
                # alias until every instance passes, as in a first deploy.
                self._flip(integration, colour, live, deploy=changes)
                waited = self._wait_online(self.urls[integration.name], colour)
                step.detail = (f"{colour} runs {self.version} on {integration.name}, live once its gate "
                               f"passed; serving {waited:.1f}s after the up")
            else:
                self._deploy_offline(integration, "integration", plan)
                step.detail = f"{colour} runs {self.version} on {integration.name}"
            if live is None:
                self._wait_online(self.urls[integration.name], colour)
        if live is None:
            run.record(5, INCLUDED, f"first deploy: {colour} went live in step 4 (gate, then alias)")
        elif live == colour:
            run.record(5, INCLUDED, f"{colour} runs {self.version} live already: step 4's up "
                                    "converged it (gate, then alias)")
        elif integration.name in self.flips:
            run.record(5, INCLUDED, f"in step 4's up: {flip_detail(integration.name, self.flips[integration.name])}")
        else:
            with run.step(5) as step:
                self._flip(integration, colour, live)
                waited = self._wait_online(self.urls[integration.name], colour)
                step.detail = flip_detail(integration.name, self.flips[integration.name])
                self._say(f"{self.urls[integration.name]} serves {self.version} from {colour} "
                          f"({waited:.1f}s after the up)")

        if manifest.acceptance is None:
            run.record(6, SKIPPED, "the manifest has no acceptance.command")
        else:
            with run.step(6) as step:
                step.detail = self._acceptance(integration.config(), self.urls[integration.name])

    def _production_steps(self, production: EnvStack, held: contextlib.ExitStack,
                          staging: Staging | None) -> None:
        run = self.run
        with run.step(8) as step:
            if staging is None:
                held.callback(self._locked(production).release)
                colour, live, _ = self._deploy_offline(production, "production",
                                                       self._offline_plan(production))
                step.detail = f"{colour} runs {self.version} on {production.name}"
            else:
                colour, live = staging.plan.colour, staging.plan.live
                self._offline_outputs(production, colour, live, staging.join())
                step.detail = (f"{colour} runs {self.version} on {production.name} (staged during "
                               f"integration's steps; its up took {staging.seconds:.1f}s)")
        with run.step(7) as step:
            # The upload is the ConsulKey resources of step 8's `up` (a key is written only when
            # its value changed); this step checks Consul holds the manifest's configuration.
            step.detail = self._check_config(production)

        if live is None:
            run.record(9, INCLUDED, f"first deploy: {colour}'s gate passed inside step 8's up")
            run.record(10, INCLUDED, f"first deploy: the alias was created with {colour} in step 8")
        elif live == colour:
            run.record(9, INCLUDED, f"{colour} runs {self.version} live already: its gate passed "
                                    "inside step 8's up")
            run.record(10, INCLUDED, f"the alias points at {colour}: step 8's up converged it")
        else:
            with run.step(9) as step:
                waited = self._gate(production, colour)
                step.detail = f"every {colour} instance passing after {waited:.1f}s"
                self._say(step.detail)
            with run.step(10) as step:
                self._flip(production, colour, live)
                step.detail = flip_detail(production.name, self.flips[production.name])
                self._say(step.detail)

        with run.step(11) as step:
            url = self.urls[production.name]
            waited = self._wait_online(url, colour)
            step.detail = f"{url} serves {self.version} from {colour}"
            self._say(f"{step.detail} ({waited:.1f}s after the flip)")

    def _acceptance(self, config: StackConfig, url: str) -> str:
        """The acceptance command in a container on integration's build host (see acceptance.py)."""
        host, spec = config.hosts[config.build_host], self.manifest.acceptance
        if spec is None:
            raise StepFailed(f"{self.manifest.path}: acceptance: not set, so there is nothing to run")
        if spec.image is not None:
            refusal = registry_refusal(spec.image, allowed_registries(config.stack, "service-image-pinned"),
                                       self.manifest.path, policy_config_file(config.stack))
            if refusal:
                raise StepFailed(refusal)
        base_url = container_url(url, host, config.source)
        run = AcceptanceRun(name=acceptance_name(self.service), image=spec.image or self._built().image,
                            command=spec.command,
                            environment={"BASE_URL": base_url, "EXPECTED_VERSION": self.version,
                                         "SERVICE_NAME": self.service})
        self._say(f"BASE_URL={base_url} {' '.join(spec.command)}  (in {run.image} on {host.name})")
        code, output = run_acceptance(run, host.docker)
        self._say(output)
        if code != 0:
            raise StepFailed(f"the acceptance tests failed against {base_url} (exit {code}): "
                             f"{output.splitlines()[-1] if output else ''}")
        return f"passed against {base_url} in {run.image}"

    def _config_drift(self, production: EnvStack) -> tuple[str, list[str]]:
        """(production's config prefix in Consul KV, the manifest's config keys it lacks or holds
        another value for)."""
        config = production.config()
        prefix = config_prefix(config.environment, self.service)
        wanted = self.manifest.config
        if not wanted:
            return prefix, []
        try:
            present = consul_api.kv_tree(config.service_host(self.service).consul, prefix,
                                         production.deployer_token())
        except consul_api.ConsulError as error:
            raise StepFailed(f"cannot read the service configuration from Consul: {error}") from None
        return prefix, [key for key, value in sorted(wanted.items()) if present.get(prefix + key) != value]

    def _check_config(self, production: EnvStack) -> str:
        """Every config entry of the manifest is in production's Consul KV with its value."""
        wanted = self.manifest.config
        if not wanted:
            return "the manifest has no config entries"
        prefix, wrong = self._config_drift(production)
        if wrong:
            raise StepFailed(f"Consul KV under {prefix} lacks or differs for {', '.join(wrong)} "
                             f"after step 8's up")
        self._say(f"{len(wanted)} config entries under {prefix} match the manifest")
        return f"{len(wanted)} entries under {prefix} match the manifest"

    def _release(self, config, token: str) -> Release | None:
        """The release record of this version, if it exists; refuses a rebuild from other sources."""
        settings = next(iter(config.services), None)
        host = config.service_host(settings)
        try:
            records = read_service_records(host.consul, config.environment, self.service, token)
        except consul_api.ConsulError as error:
            raise StepFailed(f"cannot read the release records from Consul: {error}") from None
        release = records.releases.get(self.version)
        if release is None:
            return None
        checkout = context_digest(self.manifest.build.context, exclude_files=(self.manifest.path,))
        if release.source != checkout:
            raise StepFailed(f"{self.service} {self.version} is already released as "
                             f"{release.reference}, built from other sources than "
                             f"{self.manifest.build.context} holds now; a released version is never "
                             f"rebuilt: run the pipeline with a new version (e.g. "
                             f"{suggest_next(self.version)})")
        return release

    def _gate(self, production: EnvStack, colour: str) -> float:
        """Step 9 with the health gate's own wait: every instance of `colour` on every host."""
        config = production.config()
        settings = deployed(production, self.service)
        instances = config.colour_instances(settings, colour)
        self._say(f"{len(instances)} instance(s) on {', '.join(settings.hosts)}, up to "
                  f"{settings.gate_timeout_s}s")
        return wait_for_gate(instances, settings.gate_timeout_s,
                             f"{config.environment}/{self.service}/{colour}",
                             production.deployer_token(), self.service)


def check_deployed_as(config: StackConfig, manifest: Manifest) -> None:
    """Refuses a manifest unless it is the one the stack deploys under its name (if the stack
    deploys that service yet): the stack entry, not the manifest, says which service a repo is."""
    for settings in config.services:
        if settings.name == manifest.name or same_file(settings.manifest, manifest.path):
            check_entry(config.source, settings, manifest)


def flips_with_deploy(settings: ServiceConfig, live: str, colour: str) -> bool:
    """Whether integration's offline deploy and its flip to `colour` go in one `up`: yes, unless
    `colour` is live already or its preview traffic must be judged between the two
    (gate.previewTraffic)."""
    return colour != live and settings.preview_gate is None


def colour_running(settings: ServiceConfig, version: str, image: str) -> str | None:
    """The colour whose stack config already holds this release (version and digest), if any:
    the trace of an earlier run of the same delivery."""
    return next((colour for colour, slot in sorted(settings.colours.items())
                 if slot.version == version and slot.image == image), None)


def flip_record(outputs: dict, service: str, before: str, after: str) -> dict:
    """What the report keeps of one flip: the colours, and alias write -> the proxy serving the
    new colour as the stack measured it (its `flipSeconds` output)."""
    seconds = (outputs.get("services", {}).get(service) or {}).get("flipSeconds")
    return {"from": before, "to": after, "flipSeconds": seconds}


def flip_detail(stack: str, flip: dict) -> str:
    served = ("" if flip["flipSeconds"] is None else
              f"; the proxy served {flip['to']} {flip['flipSeconds'] * 1000:.0f} ms after the alias write")
    return f"alias {stack}: {flip['from']} -> {flip['to']}{served}"


def run_pipeline(args: PipelineArgs, out=None, who: Operator | None = None) -> int:
    out = out or sys.stdout
    if not re.fullmatch(VERSION, args.version):
        print(f"pipeline: version {args.version!r} is not allowed (letters, digits, . _ -)", file=out)
        return 2
    path = os.path.join(os.path.abspath(args.service_repo), "service.yaml")
    try:
        manifest = load_manifest(path)
    except ConfigError as error:
        print(f"pipeline: {error}", file=out)
        return 2
    return Pipeline(args, manifest, out, who).execute()
