"""Metrics: Prometheus on the platform host, scraping the request counts of every proxy (mtail in
the proxy container turns nginx's access log into them; images/proxy/bluegreen.mtail)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from bluegreen.components.model.config import RETENTION, SCRAPE_INTERVAL_S
from bluegreen.components.model.prometheus import scrape_config
from bluegreen.components.naming import docker_name
from bluegreen.components.platform.docker_host import http_healthcheck, labels, local_image

CONFIG_FILE = "/etc/prometheus/prometheus.yml"
STORAGE = "/var/lib/prometheus/metrics2"    # images/prometheus/Dockerfile makes it Prometheus's


@dataclass(frozen=True)
class MetricsArgs:
    stack: str
    image: str
    port: int
    provider: docker.Provider
    proxies: tuple[pulumi.Input[str], ...]   # each proxy's metrics address, host:port
    delivery: pulumi.Input[str] | None = None  # the delivery metrics exporter's, host:port
    address: str = "127.0.0.1"     # where it listens on the platform host (the host network)
    retention: str = "7d"
    scrape_interval_s: float = 5.0
    depends_on: tuple[pulumi.Resource, ...] = ()

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"prometheus port {self.port} is not a TCP port")
        if not self.proxies:
            raise ValueError("Prometheus needs at least one proxy to scrape; give the proxy a "
                             "metricsPort (bluegreen:platform.proxy.metricsPort)")
        if not re.fullmatch(RETENTION, self.retention):
            raise ValueError(f"prometheus retention {self.retention!r} is not hours, days or "
                             "weeks, e.g. 7d (bluegreen:platform.prometheus.retention)")
        low, high = SCRAPE_INTERVAL_S
        if not low <= self.scrape_interval_s <= high:
            raise ValueError(f"prometheus scrape interval {self.scrape_interval_s:g}s is out of "
                             f"range [{low:g}s, {high:g}s] (bluegreen:platform.prometheus.scrapeInterval)")


class Metrics(pulumi.ComponentResource):
    """Prometheus on <address>:<port> with its samples on a volume; `url` is its base URL."""

    url: pulumi.Output[str]

    def __init__(self, name: str, args: MetricsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:Metrics", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        storage = docker.Volume(f"{name}-storage", name=docker_name(args.stack, "prometheus"),
                                opts=child)
        config = pulumi.Output.all(args.delivery, *args.proxies).apply(
            lambda targets: scrape_config(list(targets[1:]), args.scrape_interval_s,
                                          [targets[0]] if targets[0] else []))
        listen = f"{args.address}:{args.port}"
        self.container = docker.Container(
            f"{name}-container",
            name=docker_name(args.stack, "prometheus"),
            image=local_image(args.image, args.provider, self),
            # The proxies' metrics listen on their host's addresses (host network), as it does.
            network_mode="host",
            command=[f"--config.file={CONFIG_FILE}", f"--storage.tsdb.path={STORAGE}",
                     f"--storage.tsdb.retention.time={args.retention}",
                     f"--web.listen-address={listen}"],
            uploads=[docker.ContainerUploadArgs(file=CONFIG_FILE, content=config)],
            volumes=[docker.ContainerVolumeArgs(volume_name=storage.name, container_path=STORAGE)],
            # Go's collector keeps the heap under the limit instead of being killed at it.
            envs=["GOMEMLIMIT=200MiB"],
            restart="unless-stopped",
            memory=256,
            memory_swap=256,  # no swap; also what Docker reports back
            labels=labels(stack=args.stack, role="prometheus"),
            healthcheck=http_healthcheck(f"http://{listen}/-/ready", must_contain="Ready"),
            wait=True,
            wait_timeout=60,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                depends_on=list(args.depends_on), delete_before_replace=True)),
        )
        self.url = self.container.id.apply(lambda _: f"http://{listen}")
        self.register_outputs({"url": self.url})
