"""Service: a service in one environment: its images, its linked dependencies on a private network
on every host (a service without dependencies needs none and runs on the default bridge), a ColourSlot per configured colour, and the alias that points at the live one."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field, replace

import pulumi
import pulumi_docker as docker

from bluegreen.components.consul import rules
from bluegreen.components.consul.acl_token import AclToken
from bluegreen.components.consul.alias import Alias, AliasArgs
from bluegreen.components.consul.key import ConsulKey
from bluegreen.components.consul.records import ServiceRecords
from bluegreen.components.model.bake import (
    alias_colour, bake_start, flips, rolling, rollout_cancelled, rollout_start, rolls_out
)
from bluegreen.components.model.config import Host, ServiceConfig
from bluegreen.components.model.hooks import NO_HOOKS
from bluegreen.components.model.manifest import Dependency, Manifest
from bluegreen.components.model.release import (
    ColourPlan, Release, history_entry, release_config, release_id, slot_record
)
from bluegreen.components.model.live import ColourChange, live_touch, serving_colour
from bluegreen.components.model.split import split_value
from bluegreen.components.naming import (
    acl_token_name, call_routes, bake_key, catalogue_entry, catalogue_key, config_prefix, docker_name,
    health_probe_path, history_prefix, hooks_key, preview_path, release_prefix, route_claim_key,
    route_key, service_network, slot_key, split_key, stable_path
)
from bluegreen.components.platform.docker_host import labels, needs_legacy_builder
from bluegreen.components.service.colour_slot import ColourSlot, ColourSlotArgs, shape_of, tokenless_kept
from bluegreen.components.service.service_image import ServiceImage, dependency_image_args, service_image_args


@dataclass(frozen=True)
class ServiceArgs:
    stack: str
    environment: str
    settings: ServiceConfig
    manifest: Manifest
    hosts: dict[str, Host]
    providers: dict[str, docker.Provider]
    build_host: str                  # whose engine builds and pushes
    registry: pulumi.Input[str]      # host:port of the in-house registry
    agents: dict[str, pulumi.Input[str]]  # host name -> its Consul agent's URL
    proxy: pulumi.Input[str]         # the base URL clients use (the previews' gate asks there)
    consul_token: pulumi.Input[str]  # the deployer's: registrations, gates, KV (a secret)
    issuer_token: pulumi.Input[str]  # makes the service's own token (a secret)
    plans: dict[str, ColourPlan]     # colour -> what it runs (model.release.plan_colours)
    records: ServiceRecords = field(default_factory=ServiceRecords)  # Consul's, before this update
    checkout: str = ""               # content hash of the build context now
    committed_at: str | None = None  # when the checkout's last commit was made (None: uncommitted)
    actor: str = "pulumi up"         # who deploys, for the release history
    now: str = ""                    # this update's time, for the release history
    base_image: str = "debian:bookworm-slim"  # passed to Dockerfiles as BASE_IMAGE
    secret_environment: pulumi.Input[dict] | None = None  # NAME -> value, from bluegreen:secrets
    # Hosts where the service has its private network (address_pools.private_network_hosts);
    # None: every host when it has dependencies, else none.
    network_hosts: tuple[str, ...] | None = None
    proxy_port: pulumi.Input[int] | None = None  # where callers reach the proxy (with the bridge address)
    proxy_address: pulumi.Input[str] | None = None  # the proxy's host: callers on other hosts go there
    routes: dict[str, str] = field(default_factory=dict)  # service -> route, of this stack's services
    secret_fingerprints: dict[str, str] = field(default_factory=dict)  # NAME -> release.secret_fingerprint
    dependencies_shape: str = ""     # live.dependencies_shape of its linked dependencies
    # Each proxy's own base URL by host, where a flip is proven; None: the one proxy at `proxy`.
    proxies: pulumi.Input[dict] | None = None

    def __post_init__(self):
        if self.settings.name != self.manifest.name:
            raise ValueError(f"{self.manifest.path}: name: the manifest says {self.manifest.name!r} "
                             f"but the stack configures it as {self.settings.name!r}; make them equal")
        unknown = [h for h in (*self.settings.hosts, self.build_host)
                   if h not in self.providers or h not in self.agents]
        if unknown:
            raise ValueError(f"service {self.settings.name} targets unknown host(s) {unknown}")
        if set(self.plans) != set(self.settings.colours):
            raise ValueError(f"service {self.settings.name}: plans for {sorted(self.plans)} but "
                             f"colours {sorted(self.settings.colours)} are configured")


def release_json(record: Release, image: pulumi.Input[str]) -> pulumi.Output[str]:
    """The release record (naming.release_prefix) with the reference its image was pushed as."""
    return pulumi.Output.from_input(image).apply(
        lambda reference: replace(record, reference=reference).to_json())


class Service(pulumi.ComponentResource):
    """Blue/green deployment of one service; the alias follows `settings.live` once its gate passed."""

    live: pulumi.Output[str]
    images: pulumi.Output[dict]
    url: pulumi.Output[str]
    preview_url: pulumi.Output[str]
    flip_seconds: pulumi.Output[float]
    flip_proofs: pulumi.Output[dict]

    def __init__(self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:service:Service", name, None, opts)
        manifest, env = args.manifest, args.environment
        # KV writes and the gate may use any agent: the first target host's.
        consul = args.agents[args.settings.hosts[0]]
        self.token = self._service_token(name, args, consul)
        self.url = pulumi.Output.concat(args.proxy, stable_path(env, manifest.route))
        self.preview_url = pulumi.Output.concat(args.proxy, preview_path(env, manifest.route))
        # Where the proxy is asked whether it serves a colour: the health path under each URI.
        probes = {preview: pulumi.Output.concat(args.proxy, health_probe_path(
            env, manifest.route, manifest.health.path, preview=preview)) for preview in (False, True)}
        proofs = {preview: at_each_proxy(args.proxies or {"proxy": args.proxy}, health_probe_path(
            env, manifest.route, manifest.health.path, preview=preview)) for preview in (False, True)}
        # The services it calls, each at its route (a callee of another stack: its name).
        callees = call_routes(manifest.calls, args.routes)
        images = self._images(name, args)
        self.releases = self._release_records(name, args, images, consul)
        networks = self._networks_and_dependencies(name, args)
        self._colours(name, args, images, networks, probes[True], callees, consul)
        self._kv_entries(name, args, images, callees, consul)
        aliased = alias_colour(args.settings, args.records)
        self.alias = Alias(f"{name}-alias", AliasArgs(
            consul_address=consul, environment=env, service=manifest.name,
            colour=aliased, gate=self.slots[aliased].gate, urls=proofs[False],
            preview_urls=proofs[True], token=args.consul_token, hooks=args.settings.hooks,
            version=args.plans[aliased].version, digest=images[aliased], actor=args.actor,
            stack=args.stack),
            opts=pulumi.ResourceOptions(parent=self))
        self.bake = self._bake(name, args, consul)
        self.split = self._split(name, args, consul)
        self.live = self.alias.colour
        self.flip_seconds = self.alias.flip_seconds
        self.flip_proofs = self.alias.proofs
        self.images = pulumi.Output.from_input(
            {colour: {"version": plan.version, "image": images[colour]}
             for colour, plan in args.plans.items()})
        self.register_outputs({"live": self.live, "images": self.images, "url": self.url,
                               "previewUrl": self.preview_url, "flipSeconds": self.flip_seconds})

    def _service_token(self, name: str, args: ServiceArgs, consul) -> AclToken:
        """The containers' own token: read this service's config prefix in this environment, and
        nothing else. Made once; both colours carry it."""
        env, service = args.environment, args.manifest.name
        return AclToken(
            f"{name}-token", address=consul, token=args.issuer_token,
            token_name=acl_token_name("service", env, service),
            rules=rules.service_rules(env, service),
            description=f"{service} in {env}: reads its own configuration",
            opts=pulumi.ResourceOptions(parent=self))

    def _images(self, name: str, args: ServiceArgs) -> dict[str, pulumi.Input[str]]:
        """Colour -> the digest reference it runs. Only a version never released is built, once;
        a released one runs its recorded digest whatever the checkout holds, and so does a colour
        pinned to a digest."""
        manifest = args.manifest
        repository = pulumi.Output.concat(args.registry, "/", manifest.name)
        legacy_builder = needs_legacy_builder(args.hosts[args.build_host])
        built = {
            version: ServiceImage(f"{name}-image-{version}", service_image_args(
                manifest, version, repository, args.providers[args.build_host], args.base_image,
                legacy_builder=legacy_builder), opts=pulumi.ResourceOptions(parent=self)).reference
            for version in sorted({p.version for p in args.plans.values() if p.reference is None})}
        for plan in args.plans.values():
            if plan.note:
                pulumi.log.warn(plan.note, resource=self)
        return {colour: plan.reference or built[plan.version] for colour, plan in args.plans.items()}

    def _release_records(self, name: str, args: ServiceArgs, images: dict,
                         consul) -> dict[str, ConsulKey]:
        """One record per version, kept when the version leaves the stack, since every
        environment and every later update reads them."""
        records: dict[str, ConsulKey] = {}
        for colour, plan in sorted(args.plans.items()):
            if plan.version in records:
                continue
            record = plan.release or Release(
                service=args.manifest.name, version=plan.version, reference="",
                source=args.checkout, spec=plan.spec, committed_at=args.committed_at)
            records[plan.version] = ConsulKey(
                f"{name}-release-{plan.version}", address=consul, token=args.consul_token,
                key=release_prefix(args.manifest.name) + plan.version,
                value=release_json(record, images[colour]),
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
        return records

    def _networks_and_dependencies(self, name: str, args: ServiceArgs) -> dict[str, pulumi.Output[str]]:
        """The private network and linked dependencies on each host that has them (a service
        without dependencies runs on the default bridge); host -> network name."""
        manifest, settings = args.manifest, args.settings
        repository = pulumi.Output.concat(args.registry, "/", manifest.name)
        dependency_images = {d.alias: self._dependency_image(name, args, d, repository)
                             for d in manifest.dependencies}
        networks = {}
        self.dependencies: list[docker.Container] = []
        network_hosts = args.network_hosts if args.network_hosts is not None else \
            (settings.hosts if manifest.dependencies else ())
        for host_name in (h for h in settings.hosts if h in network_hosts):
            network = docker.Network(
                f"{name}-{host_name}-network", name=service_network(args.environment, manifest.name),
                opts=pulumi.ResourceOptions(parent=self, provider=args.providers[host_name]))
            networks[host_name] = network.name
            for dependency in manifest.dependencies:
                self.dependencies.append(self._dependency(
                    name, args, dependency, host_name, network, dependency_images[dependency.alias]))
        return networks

    def _colours(self, name: str, args: ServiceArgs, images: dict, networks: dict, preview_probe,
                 callees: dict[str, str], consul) -> None:
        """A ColourSlot per colour with its slot record, and the history: one line per release
        (the live colour's, where both colours run it)."""
        self.slots: dict[str, ColourSlot] = {}
        self.slot_records: dict[str, ConsulKey] = {}
        self.history: dict[str, ConsulKey] = {}
        slot_options = pulumi.ResourceOptions(parent=self, depends_on=self.dependencies)
        releases = {}   # colour -> (release id, configuration)
        for colour, plan in args.plans.items():
            slot_args = self._slot_args(args, colour, plan, images[colour], networks, preview_probe,
                                        callees)
            self.slots[colour] = ColourSlot(f"{name}-{colour}", slot_args, opts=slot_options)
            releases[colour] = self._release_of(args, colour, plan, slot_args)
            self.slot_records[colour] = self._slot_record(name, args, colour, plan, images[colour],
                                                          releases[colour], consul)
        for colour, plan in sorted(args.plans.items(), key=lambda item: item[0] != args.settings.live):
            release, config = releases[colour]
            if release not in self.history:
                self.history[release] = self._history_entry(
                    name, args, colour, plan, images[colour], release, config, consul)

    def _kv_entries(self, name: str, args: ServiceArgs, images: dict, callees: dict[str, str],
                    consul) -> None:
        """Step 7 of the flow: the manifest's config block in KV (each key written only when its
        value changed; containers read it live, so a config change restarts nothing), the route,
        and the catalogue entry (what the catalogue shows besides live Consul state)."""
        manifest, env, token = args.manifest, args.environment, args.consul_token
        child = pulumi.ResourceOptions(parent=self)
        self.config_keys = [
            ConsulKey(f"{name}-config-{key}", address=consul, token=token,
                      key=config_prefix(env, manifest.name) + key, value=value, opts=child)
            for key, value in sorted(manifest.config.items())]
        self.route = ConsulKey(f"{name}-route", address=consul, token=token,
                               key=route_key(env, manifest.name), value=manifest.route, opts=child)
        # The program claimed the route (check-and-set) before anything registered
        # (stack_inputs.check_route_claims); this key keeps the claim, and its deletion (the
        # service leaves its stack, or takes another route) frees it.
        self.route_claim = ConsulKey(f"{name}-route-claim", address=consul, token=token,
                                     key=route_claim_key(env, manifest.route), value=manifest.name,
                                     opts=child)
        # The watchdog tells them of its flips (a roll-back, a rollout's last step).
        self.hooks = ConsulKey(f"{name}-hooks", address=consul, token=token,
                               key=hooks_key(env, manifest.name),
                               value=json.dumps(args.settings.hooks.as_record(), sort_keys=True),
                               opts=child) if args.settings.hooks != NO_HOOKS else None
        self.catalogue = ConsulKey(
            f"{name}-catalogue", address=consul, token=token, key=catalogue_key(env, manifest.name),
            value=pulumi.Output.from_input(images).apply(lambda refs: json.dumps(
                catalogue_entry(manifest, env, args.settings, refs, callees), sort_keys=True)),
            opts=child)

    def _slot_args(self, args: ServiceArgs, colour: str, plan: ColourPlan, image, networks: dict,
                   preview_probe, callees: dict[str, str]) -> ColourSlotArgs:
        """One colour's arguments; the colour the alias names keeps the secret values it runs
        with (`frozen`) as long as nothing plain about it changes."""
        settings = args.settings
        slot_args = tokenless_kept(ColourSlotArgs(
            stack=args.stack, environment=args.environment, service=settings.name, spec=plan.spec,
            colour=colour, version=plan.version, image=image,
            hosts=tuple(args.hosts[h] for h in settings.hosts), providers=args.providers,
            networks=networks, live=colour == settings.live, agents=args.agents,
            consul_token=args.consul_token, service_token=self.token.secret_id,
            replicas=settings.replicas, gate_timeout_s=settings.gate_timeout_s,
            environment_overrides=settings.colours[colour].environment,
            secret_environment=args.secret_environment, preview_url=preview_probe,
            calls=callees, proxy_port=args.proxy_port, proxy_address=args.proxy_address),
            args.records.shapes.get(colour))
        recorded = args.records.shapes.get(colour)
        frozen = colour == serving_colour(args.records.live) and shape_of(slot_args) == recorded
        return replace(slot_args, frozen=frozen)

    @staticmethod
    def _release_of(args: ServiceArgs, colour: str, plan: ColourPlan,
                    slot_args: ColourSlotArgs) -> tuple[str, dict]:
        """The release id and configuration the colour runs after this update: a frozen colour's
        as recorded, any other's from the stack config."""
        recorded = args.records.configs.get(colour)
        if slot_args.frozen and recorded is not None:
            return args.records.running.get(colour, plan.version), recorded
        config = release_config(slot_args.environment_overrides, slot_args.replicas,
                                args.secret_fingerprints)
        return release_id(plan.version, config, args.records.history), config

    def _slot_record(self, name: str, args: ServiceArgs, colour: str, plan: ColourPlan, image,
                     release: tuple[str, dict], consul_address) -> ConsulKey:
        """What the colour runs, written once its containers are registered and gated."""
        slot, records, settings = self.slots[colour], args.records, args.settings
        dependencies = args.dependencies_shape
        replaced = live_touch(ColourChange(
            colour, True, plan.version, records.slots.get(colour), slot.shape,
            records.shapes.get(colour), dependencies, records.dependencies.get(colour))) \
            if colour == serving_colour(records.live) else None
        if replaced:  # acknowledged: stack_inputs refuses it otherwise
            pulumi.log.warn(f"{args.environment}/{settings.name}: this update replaces live "
                            f"containers, as acknowledgeLive: {settings.acknowledge_live} allows: "
                            f"{replaced}", resource=self)
        return ConsulKey(
            f"{name}-{colour}-slot", address=consul_address, token=args.consul_token,
            key=slot_key(args.environment, settings.name, colour),
            value=pulumi.Output.from_input(image).apply(
                lambda reference: slot_record(plan.version, reference, slot.shape, replaced,
                                              release=release[0], config=release[1],
                                              acknowledged=settings.acknowledge_live,
                                              dependencies=dependencies)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[slot.gate]))

    def _history_entry(self, name: str, args: ServiceArgs, colour: str, plan: ColourPlan, image,
                       release: str, config: dict, consul_address) -> ConsulKey:
        """The release's line in the environment's history (kept when it leaves the stack)."""
        records = args.records
        # Through a rollout the alias moves later (the watchdog records liveAt then), or never.
        live = colour == alias_colour(args.settings, records)
        was_live = records.live == colour and records.running.get(colour) == release
        return ConsulKey(
            f"{name}-history-{release}", address=consul_address, token=args.consul_token,
            key=history_prefix(args.environment, args.settings.name) + release,
            value=pulumi.Output.from_input(image).apply(lambda reference: json.dumps(
                history_entry(records.history.get(release), version=plan.version,
                              reference=reference, colour=colour, live=live, was_live=was_live,
                              now=args.now, actor=args.actor, release=release, config=config,
                              committed_at=plan.release.committed_at if plan.release
                              else args.committed_at),
                sort_keys=True)),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True,
                                        depends_on=[self.slots[colour].gate]))

    def _bake(self, name: str, args: ServiceArgs, consul_address) -> ConsulKey | None:
        """The bake record: written right after a flip (timed from the alias write) when the
        service has a bake time, else kept as it is (the watchdog updates it); none otherwise. A
        flip through a rollout writes it `rolling` instead (model.rollout), once the new colour's
        gate passed: the watchdog walks the steps and moves the alias."""
        settings, records, before = args.settings, args.records, args.records.live
        depends: list[pulumi.Resource] = [self.alias]
        value: pulumi.Input[str]
        ignore: list[str] = []
        now = datetime.datetime.now(datetime.timezone.utc)
        cancelled = rollout_cancelled(settings, records, now)
        if cancelled:
            value = cancelled
        elif rolls_out(settings, records) and before is not None:   # a rollout flips from a colour
            value = rollout_start(settings, before, records.slots.get(before), now)
            depends.append(self.slots[settings.live].gate)
        # Kept as it is: a rollout under way (its record is the bake record), or no flip.
        elif records.bake and (rolling(settings, records) or not flips(before, settings.live)):
            value, ignore = records.bake, ["value"]
        elif flips(before, settings.live) and settings.bake_s:
            value = self.alias.colour.apply(lambda colour: bake_start(
                settings, colour, before, records.slots.get(before),
                datetime.datetime.now(datetime.timezone.utc)))
        else:
            return None
        return ConsulKey(f"{name}-bake", address=consul_address, token=args.consul_token,
                         key=bake_key(args.environment, settings.name), value=value,
                         opts=pulumi.ResourceOptions(parent=self, depends_on=depends,
                                                     ignore_changes=ignore))

    def _split(self, name: str, args: ServiceArgs, consul_address) -> ConsulKey:
        """The split record (model.split), written once the alias is where the stack says and,
        when it sends traffic there, once the offline colour's gate passed; a record changed
        outside `pulumi up` (./bg split) is written back to what the stack file says, except
        while a rollout's watchdog moves it."""
        settings = args.settings
        serving = alias_colour(settings, args.records)
        gates = [self.slots[colour].gate for colour in settings.colours
                 if colour != serving and settings.split.percent]
        walked = rolls_out(settings, args.records) or rolling(settings, args.records)
        return ConsulKey(f"{name}-split", address=consul_address, token=args.consul_token,
                         key=split_key(args.environment, settings.name),
                         value=split_value(settings.split, serving),
                         observed=None if walked else args.records.split or "",
                         opts=pulumi.ResourceOptions(parent=self, depends_on=[self.alias, *gates]))

    def _dependency_image(self, name: str, args: ServiceArgs, dependency: Dependency,
                          repository: pulumi.Output[str]) -> pulumi.Input[str]:
        """A dependency given as `build` is built and pushed once, then pulled by digest per host."""
        if dependency.image is not None:   # a manifest gives an image or a build, never both
            return dependency.image
        return ServiceImage(f"{name}-{dependency.alias}-image", dependency_image_args(
            dependency, repository, args.providers[args.build_host], args.base_image,
            legacy_builder=needs_legacy_builder(args.hosts[args.build_host])),
            opts=pulumi.ResourceOptions(parent=self)).reference

    def _dependency(self, name: str, args: ServiceArgs, dependency: Dependency, host_name: str,
                    network: docker.Network, reference: pulumi.Input[str]) -> docker.Container:
        provider = args.providers[host_name]
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        label = f"{name}-{dependency.alias}-{host_name}"
        pulled = docker.RemoteImage(label + "-pull", name=reference, keep_locally=True, opts=child)
        volumes = []
        if dependency.volume:
            data = docker.Volume(label + "-data",
                                 name=docker_name(args.environment, args.manifest.name, dependency.alias),
                                 opts=child)
            volumes.append(docker.ContainerVolumeArgs(volume_name=data.name,
                                                      container_path=dependency.volume))
        return docker.Container(
            label,
            name=docker_name(args.environment, args.manifest.name, dependency.alias, host_name),
            image=pulled.name,
            envs=[f"{k}={v}" for k, v in sorted(dependency.environment.items())],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(
                name=network.name, aliases=[dependency.alias])],
            volumes=volumes,
            restart="unless-stopped",
            memory=dependency.memory_mb,
            memory_swap=dependency.memory_mb,  # no swap; also what Docker reports back
            labels=labels(stack=args.stack, role="dependency", service=args.manifest.name,
                          environment=args.environment, dependency=dependency.alias),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, delete_before_replace=True,
                                        depends_on=[pulled]),
        )


def at_each_proxy(proxies: pulumi.Input[dict], path: str) -> pulumi.Output[dict]:
    """`path` at each proxy's base URL (proxy name -> URL)."""
    return pulumi.Output.from_input(proxies).apply(
        lambda urls: {name: f"{url}{path}" for name, url in urls.items()})
