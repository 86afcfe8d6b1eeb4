"""Runs the stack program (`components.program.run`) under Pulumi mocks and records every resource
registration: type, name, URN, inputs, outputs, provider, parent and dependencies.

The mocks answer like the real providers would (a registry digest for pushed images, an image ID
for pulled ones, an external port for published container ports), so tests can check that values
flow from one resource into another instead of only echoing what they configured."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
import shutil
from typing import Any, Callable

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime._callbacks import _CallbackServicer
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT = "bluegreen"
from bluegreen.components.naming import (ACL_TOKEN_TYPE, CONSUL_KEY_TYPE, GENERATED_SECRET_TYPE,
                               HEALTH_GATE_TYPE, HTPASSWD_TYPE, REGISTRATION_TYPE,
                               REGISTRY_CERTIFICATE_TYPE, dynamic_type)

ACL_TOKEN = dynamic_type(ACL_TOKEN_TYPE)
GENERATED_SECRET = dynamic_type(GENERATED_SECRET_TYPE)
REGISTRY_CERTIFICATE = dynamic_type(REGISTRY_CERTIFICATE_TYPE)
HTPASSWD = dynamic_type(HTPASSWD_TYPE)
REGISTRATION = dynamic_type(REGISTRATION_TYPE)
HEALTH_GATE = dynamic_type(HEALTH_GATE_TYPE)
CONSUL_KEY = dynamic_type(CONSUL_KEY_TYPE)
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
REGISTRY_IMAGE = "docker:index/registryImage:RegistryImage"
PROVIDER = "pulumi:providers:docker"
FIRST_EXTERNAL_PORT = 32768


def binary(name: str) -> str:
    """A toolchain binary: on PATH (./bg test), else in the set-up's cache."""
    cache = os.environ.get("BLUEGREEN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bluegreen")
    found = shutil.which(name) or shutil.which(name, path=os.path.join(cache, "bin"))
    assert found, f"{name} is missing: ./bg setup builds it into {cache}/bin"
    return found


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# The `credentials` output of a platform stack, as a referencing stack reads it.
PLATFORM_CREDENTIALS = {"credentials": {"consulDeployerTokens": {"production": "deployer-token",
                                                                "integration": "deployer-token"},
                                        "consulIssuerToken": "issuer-token",
                                        "registryUsername": "pusher", "registryPassword": "registry-pw"}}

SECRET_SIG = "4dabf18193072939515e22adb298388d"   # how a secret value reaches the mocks


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def plain(value: Any) -> Any:
    """A value as the mocks received it, with any secret wrapper taken off."""
    return value["value"] if is_secret(value) else value


def fake_secret(name: str) -> str:
    """What a GeneratedSecret (or an AclToken's SecretID) named `name` holds under the mocks."""
    return "secret-of-" + name


@dataclass
class RegisteredResource:
    type: str
    name: str
    urn: str
    id: str
    custom: bool
    inputs: dict
    outputs: dict
    provider: str                  # "<provider urn>::<id>" or ""
    parent: str                    # parent URN ("" for the stack itself)
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    error_hooks: list[str] = field(default_factory=list)   # names of its on_error hooks
    ignore_changes: list[str] = field(default_factory=list)

    @property
    def provider_urn(self) -> str:
        return self.provider.rsplit("::", 1)[0] if self.provider else ""

    @property
    def all_dependencies(self) -> set[str]:
        result = set(self.dependencies)
        for urns in self.property_dependencies.values():
            result.update(urns)
        return result

    def label(self, key: str) -> str | None:
        for entry in self.inputs.get("labels") or []:
            if entry.get("label") == key:
                return entry.get("value")
        return None


class ProgramFailed(Exception):
    """The program raised; `resources` holds what was registered before (or despite) that."""

    def __init__(self, error: BaseException, resources: list[RegisteredResource]):
        super().__init__(str(error))
        self.error = error
        self.resources = resources


class RealisticMocks(pulumi.runtime.Mocks):
    """Outputs shaped like the docker provider's and the dynamic providers' answers."""

    def __init__(self, stack_outputs: dict | None = None):
        self.ports = itertools.count(FIRST_EXTERNAL_PORT)
        self.stack_outputs = stack_outputs or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = {k: v for k, v in copy.deepcopy(args.inputs).items() if k != "__provider"}
        resource_id = f"{args.name}-id"
        if args.typ == REGISTRY_IMAGE:
            outputs["sha256Digest"] = fake_digest("push:" + outputs["name"])
        elif args.typ == REMOTE_IMAGE:
            outputs["imageId"] = fake_digest("image:" + outputs["name"])
            outputs["repoDigest"] = outputs["name"]
        elif args.typ == CONTAINER:
            ports = []
            for port in outputs.get("ports") or []:
                port = dict(port)
                port.setdefault("protocol", "tcp")
                if not port.get("external"):
                    port["external"] = next(self.ports)
                ports.append(port)
            outputs["ports"] = ports
            resource_id = hashlib.sha256(args.name.encode()).hexdigest()
        elif args.typ == GENERATED_SECRET:
            outputs["value"] = fake_secret(args.name)
        elif args.typ == HTPASSWD:
            outputs["entry"] = f"entry-of-{args.name}"
        elif args.typ == REGISTRY_CERTIFICATE:
            outputs.update(ca=f"ca-of-{args.name}", certificate=f"certificate-of-{args.name}",
                           key=fake_secret(args.name))
        elif args.typ == ACL_TOKEN:
            outputs["secret_id"] = outputs.get("secret_id") or fake_secret(args.name)
            outputs["accessor_id"] = f"accessor-of-{outputs['name']}"
        elif args.typ == HEALTH_GATE:
            # A HealthGate that passed: its inputs plus what the provider adds.
            outputs.update(waited_s=0.5, passing=True, problems=[])
        elif args.typ == "pulumi:pulumi:StackReference":
            outputs["outputs"] = dict(self.stack_outputs)
            resource_id = outputs.get("name", args.name)
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "docker:index/getRemoteImage:getRemoteImage":
            # A platform image the bootstrap built: the data source answers with its local ID.
            return {"id": "sha256:" + hashlib.sha256(args.args["name"].encode()).hexdigest(),
                    "name": args.args["name"]}
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that also keeps what MockResourceArgs leaves out: parent and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registered: list[RegisteredResource] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        registration = self.resources[response.urn]
        self.registered.append(RegisteredResource(
            type=request.type,
            name=request.name,
            urn=response.urn,
            id=registration.id,
            custom=request.custom,
            inputs=pulumi.runtime.rpc.deserialize_properties(request.object),
            outputs=dict(registration.state),
            provider=request.provider,
            parent=request.parent,
            dependencies=list(request.dependencies),
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            error_hooks=list(request.hooks.on_error) if request.HasField("hooks") else [],
            ignore_changes=list(request.ignoreChanges),
        ))
        return response


    def ReadResource(self, request):
        response = super().ReadResource(request)
        registration = self.resources[response.urn]
        self.registered.append(RegisteredResource(
            type=request.type, name=request.name, urn=response.urn, id=registration.id,
            custom=True, inputs=pulumi.runtime.rpc.deserialize_properties(request.properties),
            outputs=dict(registration.state), provider=request.provider, parent=request.parent,
            dependencies=list(request.dependencies)))
        return response


class RecordingCallbacks:
    """Stands in for the SDK's callback server, which mocks do not start: resource options that
    carry hooks register here (by name), so a test can call a hook as the engine would."""

    def __init__(self):
        self.error_hooks: dict[str, pulumi.ErrorHook] = {}
        self.resource_hooks: dict[str, pulumi.ResourceHook] = {}

    def register_error_hook(self, hook: pulumi.ErrorHook) -> None:
        self.error_hooks[hook.name] = hook

    def register_resource_hook(self, hook: pulumi.ResourceHook) -> None:
        self.resource_hooks[hook.name] = hook

    def install(self) -> "RecordingCallbacks":
        """Call after pulumi.runtime.set_mocks, which resets the runtime settings."""
        # A program run earlier in this process through the Automation API (an e2e test in the
        # same pytest session) leaves its callback server on the SDK's list, bound to another
        # event loop: stopping it again at the end of this run, from the mocks' loop, would fail.
        _CallbackServicer._servicers.clear()
        pulumi_settings.SETTINGS.callbacks = self
        return self


def stack_config(stack: str = "local") -> dict[str, Any]:
    """The bluegreen:* values of stacks/Pulumi.<stack>.yaml, without the namespace."""
    import yaml

    with open(os.path.join(ROOT, "stacks", f"Pulumi.{stack}.yaml"), encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return {key.split(":", 1)[1]: value for key, value in data["config"].items()
            if key.startswith("bluegreen:")}


CALLBACKS = RecordingCallbacks()  # the hooks of the last run_program
STACK_OUTPUTS: dict[str, Any] = {}  # what the last run_program exported


def engine_networks(pools=None, bridges=("bridge",)):
    """What `docker info` and `docker network ls` say about one engine, for run_program."""
    from bluegreen.components.platform.address_pools import EngineNetworks

    return EngineNetworks(None if pools is None else tuple(pools), frozenset(bridges))


def _recording_export(export):
    """pulumi.export that also keeps each value, once resolved, in STACK_OUTPUTS (the mocks never
    finish the stack resource, whose outputs they would carry)."""
    def recording(name: str, value: Any) -> None:
        pulumi.Output.from_input(value).apply(lambda v: STACK_OUTPUTS.__setitem__(name, v))
        export(name, value)
    return recording


def run_program(config: dict, *, stack: str = "local", root: str = ROOT,
                stack_outputs: dict | None = None,
                records: dict | None = None,
                engines: dict | None = None,
                routes: Any = None,
                taken: dict | None = None,
                body: Callable[[], None] | None = None) -> list[RegisteredResource]:
    """Runs components.program.run(root) (or `body`, another program) with `config` (bluegreen:*
    values, keys without the namespace) and returns every registered resource. Raises
    ProgramFailed on an error.

    `stack_outputs` answers StackReferences (stacks that use another stack's platform);
    `records` ({service: ServiceRecords}) stands in for what Consul holds before the update;
    `engines` ({host: EngineNetworks}) for what each Docker engine says about its networks
    (default: Docker's own pools and only the default bridge); `routes` (a model.routes.RouteBook)
    for the environment's routes and claims (default: none), and `taken` ({route: service}) for
    the routes another update claims between this program's read and its claim."""
    from bluegreen.components import program, stack_inputs
    from bluegreen.components.consul.records import ServiceRecords
    from bluegreen.components.model.routes import RouteBook

    pulumi_settings.ROOT.set(None)
    plain_secrets = config.pop("plain_secrets", False)
    pulumi.runtime.set_all_config({
        f"bluegreen:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in config.items()
    }, [] if plain_secrets else [f"bluegreen:{key}" for key in ("secrets", "platformSecrets")
                                 if key in config])
    mocks = RealisticMocks(stack_outputs)
    monitor = RecordingMonitor(mocks)
    STACK_OUTPUTS.clear()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    read_records = stack_inputs.read_records
    stack_inputs.read_records = lambda _stack, settings, _token: (records or {}).get(
        settings.name, ServiceRecords())
    CALLBACKS.error_hooks.clear()
    CALLBACKS.resource_hooks.clear()
    CALLBACKS.install()
    read_networks = stack_inputs.read_networks
    stack_inputs.read_networks = lambda _stack, hosts: {
        h: (engines or {}).get(h, engine_networks()) for h in hosts}
    read_routes, claim_route = stack_inputs.read_routes, stack_inputs.claim_route
    stack_inputs.read_routes = lambda _stack, _token: routes or RouteBook()
    stack_inputs.claim_route = lambda _address, _environment, _service, route, _token: \
        (taken or {}).get(route)
    real_export = pulumi.export
    pulumi.export = _recording_export(real_export)
    try:
        _sync_await(run_pulumi_func(body or (lambda: program.run(root))))
    except Exception as error:  # noqa: BLE001 - handed to the test with what was registered
        # Outputs the failed program left behind must not fail the next one.
        with pulumi_settings.SETTINGS.lock:
            pulumi_settings.SETTINGS.outputs.clear()
        raise ProgramFailed(error, list(monitor.registered)) from error
    finally:
        pulumi.export = real_export
        stack_inputs.read_records = read_records
        stack_inputs.read_networks = read_networks
        stack_inputs.read_routes, stack_inputs.claim_route = read_routes, claim_route
        pulumi.runtime.set_all_config({})
    return list(monitor.registered)


class FakeClock:
    """Stands in for `time.monotonic` and `time.sleep` of the modules a test patches: sleeping
    advances the clock at once, so waits with timeouts run instantly and exactly."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds

    def install(self, monkeypatch, *modules) -> "FakeClock":
        for module in modules:
            monkeypatch.setattr(module.time, "monotonic", self.monotonic)
            monkeypatch.setattr(module.time, "sleep", self.sleep)
        return self
