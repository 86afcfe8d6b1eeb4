"""Registry: the in-house image registry, published on the platform host's address (127.0.0.1 for
a single machine; its lab or site address when other hosts pull from it, then over TLS); every
push and pull needs its user and password (htpasswd, bcrypt)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from bluegreen.components.naming import docker_name
from bluegreen.components.platform.docker_host import http_healthcheck, labels, local_image, secret_upload
from bluegreen.components.platform.htpasswd import Htpasswd

HTPASSWD_FILE = "/etc/docker/registry/htpasswd"   # images/registry/config.yml names it
TLS_CERTIFICATE_FILE = "/etc/docker/registry/tls/registry.crt"
TLS_KEY_FILE = "/etc/docker/registry/tls/registry.key"


@dataclass(frozen=True)
class RegistryTls:
    """The registry's certificate and key (a secret), PEM; clients trust the CA that signed it."""

    certificate: pulumi.Input[str]
    key: pulumi.Input[str]


@dataclass(frozen=True)
class RegistryArgs:
    stack: str
    image: str
    port: int
    provider: docker.Provider
    username: pulumi.Input[str]
    password: pulumi.Input[str]  # a secret
    address: str = "127.0.0.1"   # where it is published: every host pulls from address:port
    tls: RegistryTls | None = None  # HTTPS (for pulls from other hosts), else plain HTTP

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"registry port {self.port} is not a TCP port")


class Registry(pulumi.ComponentResource):
    """A docker-registry container with its storage on a volume; `address` is host:port."""

    address: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        image = local_image(args.image, args.provider, self)
        storage = docker.Volume(f"{name}-storage", name=docker_name(args.stack, "registry"), opts=child)
        htpasswd = Htpasswd(f"{name}-htpasswd", username=args.username, password=args.password,
                            opts=pulumi.ResourceOptions(parent=self)).entry
        uploads, environment, scheme = [secret_upload(HTPASSWD_FILE, htpasswd)], [], "http"
        if args.tls is not None:
            uploads += [docker.ContainerUploadArgs(file=TLS_CERTIFICATE_FILE, content=args.tls.certificate),
                        secret_upload(TLS_KEY_FILE, args.tls.key)]
            environment = [f"REGISTRY_HTTP_TLS_CERTIFICATE={TLS_CERTIFICATE_FILE}",
                           f"REGISTRY_HTTP_TLS_KEY={TLS_KEY_FILE}"]
            scheme = "https"
        self.container = docker.Container(
            f"{name}-container",
            name=docker_name(args.stack, "registry"),
            image=image,
            ports=[docker.ContainerPortArgs(internal=5000, external=args.port, ip=args.address)],
            volumes=[docker.ContainerVolumeArgs(volume_name=storage.name,
                                                container_path="/var/lib/docker-registry")],
            uploads=uploads,
            envs=environment,
            restart="unless-stopped",
            memory=256,
            memory_swap=256,  # no swap; also what Docker reports back
            labels=labels(stack=args.stack, role="registry"),
            # Anonymous requests are refused: a 401 means it is up and asking for credentials.
            # (Over TLS it checks liveness only: its certificate names the published address.)
            healthcheck=http_healthcheck(f"{scheme}://127.0.0.1:5000/v2/", status=401,
                                         insecure=args.tls is not None),
            wait=True,
            wait_timeout=60,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        # Docker treats 127.0.0.0/8 registries as insecure-allowed, so plain HTTP works locally;
        # engines on other hosts pull over TLS, trusting the CA the platform installs on them.
        self.address = self.container.id.apply(lambda _: f"{args.address}:{args.port}")
        self.register_outputs({"address": self.address})
