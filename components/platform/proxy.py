"""Proxy: nginx whose configuration consul-template renders from Consul (aliases and passing
instances), checked with `nginx -t` before every graceful reload."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from bluegreen.components.naming import PLATFORM_TOKEN_FILE, docker_name
from bluegreen.components.platform.docker_host import http_healthcheck, labels, local_image, secret_upload



@dataclass(frozen=True)
class ProxyArgs:
    stack: str
    image: str
    port: int
    consul_address: str          # the local agent, http://127.0.0.1:8500
    provider: docker.Provider
    consul_token: pulumi.Input[str]   # a secret: consul-template's ACL token
    depends_on: tuple[pulumi.Resource, ...] = ()
    address: str = "127.0.0.1"   # where it listens on its host (the host network)
    metrics_port: int | None = None   # where mtail serves every request's counts; None: not counted
    container_name: str = ""     # default: the platform's single proxy (naming.proxy_container)
    host: str = ""               # the host's name, on the container's labels
    # One of several behind a virtual address: it listens on every address of its host, since the
    # virtual one comes and goes with VRRP (binding an absent address needs a host sysctl).
    every_address: bool = False

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"proxy port {self.port} is not a TCP port")
        if self.metrics_port is not None and (not 0 < self.metrics_port < 65536
                                              or self.metrics_port == self.port):
            raise ValueError(f"proxy metrics port {self.metrics_port} is not a TCP port other "
                             f"than the proxy's {self.port}")
        if not self.consul_address.startswith("http"):
            raise ValueError(f"consul address {self.consul_address!r} must be an http(s) URL")


class Proxy(pulumi.ComponentResource):
    """The reverse proxy on the host network, listening on <address>:<port>; `url` is its base URL,
    `metrics` the address (host:port) of its request metrics, or None when they are off."""

    url: pulumi.Output[str]
    metrics: pulumi.Output[str] | None

    def __init__(self, name: str, args: ProxyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:Proxy", name, None, opts)
        image = local_image(args.image, args.provider, self)
        listen = f"{args.address}:{args.port}"
        bind = f"0.0.0.0:{args.port}" if args.every_address else listen
        metrics = f"{args.address}:{args.metrics_port}" if args.metrics_port else None
        self.container = docker.Container(
            f"{name}-container",
            name=args.container_name or docker_name(args.stack, "proxy"),
            image=image,
            network_mode="host",
            envs=[f"PROXY_LISTEN={bind}", f"CONSUL_HTTP_ADDR={args.consul_address}",
                  f"CONSUL_HTTP_TOKEN_FILE={PLATFORM_TOKEN_FILE}",
                  *([f"PROXY_METRICS_LISTEN={metrics}"] if metrics else [])],
            uploads=[secret_upload(PLATFORM_TOKEN_FILE, args.consul_token)],
            restart="unless-stopped",
            memory=128,
            memory_swap=128,  # no swap; also what Docker reports back
            labels=labels(stack=args.stack, role="proxy", **({"host": args.host} if args.host else {})),
            # A request through nginx's public listener, as a client makes it: unhealthy within 2 s
            # of nginx not answering, yet a minute to start (the first render from Consul).
            # Written as Docker reports it back ("60s" reads back as "1m0s": a diff on every
            # preview, and an update of the proxy on every re-run).
            healthcheck=http_healthcheck(f"http://{listen}/healthz", must_contain="ok",
                                         retries=2, start_period="1m0s"),
            wait=True,
            wait_timeout=60,
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider,
                                        depends_on=list(args.depends_on), delete_before_replace=True),
        )
        self.url = self.container.id.apply(lambda _: f"http://{listen}")
        self.metrics = self.container.id.apply(lambda _: metrics) if metrics else None
        self.register_outputs({"url": self.url, "metrics": self.metrics})
