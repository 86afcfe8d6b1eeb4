"""Platform: what every environment shares: Consul agents, the registry, the proxy and the bake
watchdog."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from bluegreen.components.consul.key import ConsulKey
from bluegreen.components.model.config import Host, PlatformConfig
from bluegreen.components.model.credentials import CREDENTIAL_KEYS
from bluegreen.components.naming import (
    bridge_listen_key, drain_timeout_key, nginx_duration, preview_from_key, prometheus_address_key,
    proxies_key, proxy_container
)
from bluegreen.components.platform.consul_cluster import ConsulCluster, ConsulClusterArgs
from bluegreen.components.platform.credentials import PlatformCredentials
from bluegreen.components.platform.delivery_exporter import DeliveryExporter, DeliveryExporterArgs
from bluegreen.components.platform.metrics import Metrics, MetricsArgs
from bluegreen.components.platform.proxy import Proxy, ProxyArgs
from bluegreen.components.platform.virtual_address import VirtualAddress, VirtualAddressArgs
from bluegreen.components.platform.docker_host import needs_tls, once_up
from bluegreen.components.platform.registry import Registry, RegistryArgs, RegistryTls
from bluegreen.components.platform.registry_certificate import RegistryCertificate
from bluegreen.components.platform.registry_trust import RegistryTrust, RegistryTrustArgs
from bluegreen.components.platform.watchdog import Watchdog, WatchdogArgs


@dataclass(frozen=True)
class PlatformArgs:
    stack: str
    settings: PlatformConfig
    hosts: dict[str, Host]
    providers: dict[str, docker.Provider]
    credentials: PlatformCredentials

    def __post_init__(self):
        for name in (self.settings.host, *self.settings.server_hosts, *self.settings.client_hosts):
            if name not in self.hosts or name not in self.providers:
                raise ValueError(f"platform host {name!r} is not configured under bluegreen:hosts")


class Platform(pulumi.ComponentResource):
    """Outputs: `consul` (the platform host's agent URL), `registry` (host:port), `registryCa`
    (the CA its TLS certificate chains to; None when it serves loopback only), `proxy` (the base
    URL clients use: the virtual address with several proxies), `proxies` (each proxy's own base
    URL by host: where a flip is proven), `prometheus` (base URL; None when the stack runs none), and the secrets environment
    stacks need: `credentials` (a deployer's Consul token per environment, the issuer's, the
    registry's user and password). The proxy's drain bound (bluegreen:platform.proxy.drainTimeout) is a KV
    entry the proxy reads."""

    consul: pulumi.Output[str]
    registry: pulumi.Output[str]
    proxy: pulumi.Output[str]
    credentials: pulumi.Output[dict]

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:Platform", name, None, opts)
        settings, secrets = args.settings, args.credentials
        home = args.hosts[settings.host]
        child = pulumi.ResourceOptions(parent=self)
        self.cluster = ConsulCluster(f"{name}-consul", ConsulClusterArgs(
            stack=args.stack, image=settings.consul.image, datacenter=settings.consul.datacenter,
            servers=tuple(args.hosts[h] for h in settings.server_hosts),
            clients=tuple(args.hosts[h] for h in settings.client_hosts),
            providers=args.providers, management_token=secrets.consul_management_token,
            gossip_key=secrets.gossip_key, environments=settings.environments), opts=child)
        registry = f"{home.address}:{settings.registry_port}"
        tls, trusted = self._registry_tls(name, args, registry, child)
        self.registry_component = Registry(f"{name}-registry", RegistryArgs(
            stack=args.stack, image=settings.registry_image, port=settings.registry_port,
            address=home.address, provider=args.providers[home.name],
            username=secrets.registry_username, password=secrets.registry_password, tls=tls),
            opts=child)
        self.proxy_components = self._proxies(name, args, child)
        self.proxy_component = next(iter(self.proxy_components.values()))
        self.prometheus = self._metrics(name, args, child)
        # On the platform host unless watchdogHosts says otherwise (config checks that the others
        # reach the proxy and Prometheus): the standby then outlives the active one's host.
        self.watchdogs = [Watchdog(f"{name}-watchdog-{number}", WatchdogArgs(
            stack=args.stack, image=settings.consul.image, host=args.hosts[host],
            proxy_url=self.proxy, provider=args.providers[host],
            consul_token=self.cluster.tokens["watchdog"], prometheus_url=self.prometheus,
            depends_on=(self.cluster,), number=number), opts=child)
            for number, host in enumerate(settings.watchdog_host_names, start=1)]
        # Each URL resolves once its agent's container is healthy: users of it wait for that.
        self.agents = {host: once_up(container, args.hosts[host].consul)
                       for host, container in self.cluster.containers.items()}
        self.consul = self.agents[home.name]
        # Resolves once every platform host trusts it: environment stacks pull right after.
        self.registry = pulumi.Output.all(self.registry_component.address, *trusted).apply(
            lambda values: values[0])
        self._proxy_settings(name, args, child)
        self.credentials = pulumi.Output.secret(platform_credentials(
            self.cluster.deployer_tokens, self.cluster.tokens["issuer"],
            secrets.registry_username, secrets.registry_password))
        self.register_outputs({"consul": self.consul, "registry": self.registry, "proxy": self.proxy,
                               "proxies": self.proxies, "credentials": self.credentials,
                               "registryCa": self.registry_ca, "prometheus": self.prometheus})

    def _proxies(self, name: str, args: PlatformArgs,
                 child: pulumi.ResourceOptions) -> dict[str, Proxy]:
        """A proxy on each proxy host, reading Consul through its own host's agent; with several,
        the virtual address in front of them. Sets `proxy` (the URL clients use, once every
        proxy is up) and `proxies` (each proxy's own URL, where a flip is proven)."""
        settings = args.settings
        several = len(settings.proxy_host_names) > 1
        proxies = {host: Proxy(f"{name}-proxy-{host}" if several else f"{name}-proxy", ProxyArgs(
            stack=args.stack, image=settings.proxy_image, port=settings.proxy_port,
            consul_address=args.hosts[host].consul, provider=args.providers[host],
            address=args.hosts[host].address if several else settings.proxy_address,
            consul_token=self.cluster.tokens["proxy"], metrics_port=settings.proxy_metrics_port,
            container_name=proxy_container(args.stack, host, several), host=host if several else "",
            every_address=several, depends_on=(self.cluster,)), opts=child)
            for host in settings.proxy_host_names}
        urls = [p.url for p in proxies.values()]
        if several and settings.proxy_virtual_address:
            self.virtual_address = VirtualAddress(f"{name}-proxy-vip", VirtualAddressArgs(
                stack=args.stack, image=settings.proxy_image,
                address=settings.proxy_virtual_address, port=settings.proxy_port,
                hosts=tuple(args.hosts[h] for h in settings.proxy_host_names),
                providers=args.providers, depends_on=tuple(proxies.values())), opts=child)
            urls.append(self.virtual_address.address)
        clients = f"http://{settings.client_proxy_address}:{settings.proxy_port}"
        self.proxy = pulumi.Output.all(*urls).apply(lambda _: clients)
        self.proxies = pulumi.Output.all(*urls).apply(
            lambda values: dict(zip(proxies, values[:len(proxies)])))
        return proxies

    def _registry_tls(self, name: str, args: PlatformArgs, registry: str,
                      child: pulumi.ResourceOptions) -> tuple[RegistryTls | None, list]:
        """When other hosts pull from the registry: its certificate (the site's or one made
        here) and each platform host's engine trusting its CA; (tls, what to wait for)."""
        self.registry_ca: pulumi.Input[str] | None = None
        home, secrets = args.hosts[args.settings.host], args.credentials
        if not needs_tls(home.address):
            return None, []
        certificate: pulumi.Input[str]
        key: pulumi.Input[str]
        ca: pulumi.Input[str]
        if secrets.registry_tls is not None:
            certificate, key, ca = secrets.registry_tls
        else:
            made = RegistryCertificate(f"{name}-registry-certificate", addresses=[home.address],
                                       opts=child)
            certificate, key, ca = made.certificate, made.key, made.ca
        self.registry_ca = ca
        self.trust = RegistryTrust(f"{name}-registry-trust", RegistryTrustArgs(
            stack=args.stack, registry=registry, ca=ca, images=self.cluster.images,
            providers=args.providers), opts=child)
        return RegistryTls(certificate, key), [c.id for c in self.trust.containers.values()]

    def _proxy_settings(self, name: str, args: PlatformArgs, child: pulumi.ResourceOptions) -> None:
        """The proxy's drain bound and bridge listener, in KV rather than its environment:
        changing either reloads the proxy, never replaces it."""
        settings, secrets = args.settings, args.credentials
        home = args.hosts[settings.host]
        self.drain_timeout = ConsulKey(
            f"{name}-proxy-drain-timeout", address=self.consul, key=drain_timeout_key(),
            value=nginx_duration(settings.proxy_drain_s), token=secrets.consul_management_token,
            opts=child)
        if settings.proxy_preview_from:
            self.preview_from = ConsulKey(
                f"{name}-proxy-preview-from", address=self.consul, key=preview_from_key(),
                value=" ".join(settings.proxy_preview_from),
                token=secrets.consul_management_token, opts=child)
        # The catalogue lists the proxies and the address clients use.
        self.proxies_entry = ConsulKey(
            f"{name}-proxy-list", address=self.consul, key=proxies_key(),
            value=self.proxies.apply(lambda urls: proxies_value(settings.proxy_virtual_address, urls)),
            token=secrets.consul_management_token, opts=child)
        # The catalogue page's charts ask Prometheus through the proxy (its read-only queries only).
        if settings.prometheus is not None:
            self.prometheus_address = ConsulKey(
                f"{name}-proxy-prometheus", address=self.consul, key=prometheus_address_key(),
                value=f"{home.address}:{settings.prometheus.port}",
                token=secrets.consul_management_token, opts=child)
        # Containers reach the services they call at the proxy on the bridge.
        if home.bridge_address:
            self.bridge_listen = ConsulKey(
                f"{name}-proxy-bridge-listen", address=self.consul, key=bridge_listen_key(),
                value=f"{home.bridge_address}:{settings.proxy_port}",
                token=secrets.consul_management_token, opts=child)

    def _metrics(self, name: str, args: PlatformArgs,
                 child: pulumi.ResourceOptions) -> pulumi.Output[str] | None:
        """Prometheus's URL, when the stack runs one; it scrapes the proxy on the platform host."""
        settings, proxy_metrics = args.settings.prometheus, self.proxy_component.metrics
        if settings is None:
            return None
        if proxy_metrics is None:
            raise ValueError("prometheus scrapes the proxy's metrics: set bluegreen:platform's "
                             "proxy.metricsPort (parse_stack_config refuses a stack without it)")
        home = args.hosts[args.settings.host]
        self.delivery = DeliveryExporter(f"{name}-delivery", DeliveryExporterArgs(
            stack=args.stack, image=args.settings.consul.image, host=home,
            provider=args.providers[home.name], consul_token=self.cluster.tokens["delivery"],
            port=settings.delivery_port, depends_on=(self.cluster,)), opts=child)
        self.metrics = Metrics(f"{name}-metrics", MetricsArgs(
            stack=args.stack, image=settings.image, port=settings.port,
            provider=args.providers[home.name],
            proxies=tuple(p.metrics for p in self.proxy_components.values() if p.metrics is not None),
            delivery=self.delivery.address, address=home.address, retention=settings.retention,
            scrape_interval_s=settings.scrape_interval_s), opts=child)
        return self.metrics.url


def proxies_value(virtual_address: str | None, urls: dict[str, str]) -> str:
    """The proxies' KV entry (naming.proxies_key) as the catalogue reads it."""
    return json.dumps({"virtualAddress": virtual_address,
                       "proxies": [{"host": host, "url": url} for host, url in urls.items()]})


def platform_credentials(deployers: dict[str, pulumi.Output[str]], issuer: pulumi.Input[str],
                         registry_username: pulumi.Input[str],
                         registry_password: pulumi.Input[str]) -> pulumi.Output[dict]:
    """The `credentials` output: what an environment stack (or the pipeline) needs to deploy,
    with a deployer token per environment."""
    return pulumi.Output.all(pulumi.Output.from_input(deployers), issuer, registry_username,
                             registry_password).apply(lambda v: dict(zip(CREDENTIAL_KEYS, v)))
