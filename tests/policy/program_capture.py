"""Runs the real Service component under Pulumi mocks and prints, as JSON, every resource
registration the way the engine would hand it to a policy pack: type, name, URN, parent,
dependencies, property dependencies, inputs and outputs as protobuf-JSON (secret and unknown
encodings kept).

Run in its own process (test_policy_program.py does) so that its mocks never replace those of
other tests:  python program_capture.py '{"mode": "up"|"preview", "environment": ..., "service": {...}}'
"""

from __future__ import annotations

import json
import os
import sys

import pulumi
import pulumi_docker as docker
from google.protobuf import json_format
from pulumi.runtime import mocks
from unit_harness import RecordingCallbacks  # on the path pytest gives this process's parent

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGEST = "sha256:" + "a" * 64


class Recorder(mocks.MockMonitor):
    def __init__(self, fakes: mocks.Mocks):
        super().__init__(fakes)
        self.records: list[dict] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        self.records.append({
            "type": request.type, "name": request.name, "urn": response.urn,
            "custom": bool(request.custom), "parent": request.parent or None,
            "dependencies": list(request.dependencies),
            "property_dependencies": {k: list(v.urns)
                                      for k, v in request.propertyDependencies.items()},
            "inputs": json_format.MessageToDict(request.object),
            "outputs": json_format.MessageToDict(response.object),
        })
        return response


class Fakes(mocks.Mocks):
    """Outputs = inputs plus what the providers compute; in a preview the computed ones are
    missing, which the SDK turns into unknowns (a new image's digest, a new container's port)."""

    def __init__(self, preview: bool):
        self.preview = preview

    def new_resource(self, args: mocks.MockResourceArgs):
        outputs = dict(args.inputs)
        if not self.preview:
            if args.typ == "docker:index/container:Container":
                outputs["ports"] = [dict(p, external=32768 + i)
                                    for i, p in enumerate(outputs.get("ports") or [])]
            if args.typ == "docker:index/registryImage:RegistryImage":
                outputs["sha256Digest"] = DIGEST
        elif args.typ == "docker:index/container:Container":
            outputs.pop("ports", None)
        return f"{args.name}-id", outputs

    def call(self, args: mocks.MockCallArgs):
        return {}


def main() -> None:
    scenario = json.loads(sys.argv[1])
    preview = scenario["mode"] == "preview"
    environment = scenario["environment"]
    recorder = Recorder(Fakes(preview))
    pulumi.runtime.set_mocks(Fakes(preview), project="bluegreen", stack=environment,
                             preview=preview, monitor=recorder)
    RecordingCallbacks().install()

    from bluegreen.components.model.config import parse_stack_config
    from bluegreen.components.model.manifest import load_manifest
    from bluegreen.components.model.release import plan_colours
    from bluegreen.components.service.service import Service, ServiceArgs

    @pulumi.runtime.test
    def program():
        config = parse_stack_config(environment, {
            "environment": environment,
            "hosts": {"local": {"docker": "unix:///var/run/docker.sock",
                                "consul": "http://127.0.0.1:18500"}},
            "platformStack": "organization/bluegreen/local",
            "services": {"vizconfig": scenario["service"]},
        }, ROOT)
        settings = config.services[0]
        manifest = load_manifest(settings.manifest)
        providers = {"local": docker.Provider("local-host-local", host="unix:///var/run/docker.sock")}
        service = Service(f"{environment}-vizconfig", ServiceArgs(
            stack=environment, environment=environment, settings=settings,
            manifest=manifest, hosts=config.hosts, providers=providers,
            build_host="local", registry="127.0.0.1:15000",
            agents={"local": "http://127.0.0.1:18500"}, proxy="http://127.0.0.1:18080",
            plans=plan_colours(config.source, settings, manifest, "", {}, {}),
            consul_token=pulumi.Output.secret("deployer-token"),
            issuer_token=pulumi.Output.secret("issuer-token")))
        if scenario.get("secret_env"):
            # How a secret reaches a container env: one secret element of the envs list.
            docker.Container(
                "secret-env", image=f"127.0.0.1:15000/other@{DIGEST}", memory=64,
                restart="unless-stopped",
                envs=["PLAIN=1", pulumi.Output.secret("DB_PASSWORD=hunter2")],
                labels=[docker.ContainerLabelArgs(label="bluegreen.role", value="dependency")],
                opts=pulumi.ResourceOptions(provider=providers["local"]))
        return service.live

    program()
    json.dump(recorder.records, sys.stdout)


if __name__ == "__main__":
    main()
