"""What one run of the stack program reads before anything registers: the stack's config and
secrets, the services' manifests, Consul's release records, the hosts' networks, and from them the
colour plans. All of it is validated here, so an invalid input deploys nothing."""

from __future__ import annotations

import datetime
import json
import subprocess
from dataclasses import dataclass, field

import pulumi
from pulumi.runtime.sync_await import _sync_await

from bluegreen.components.consul.api import ConsulError
from bluegreen.components.consul.records import ServiceRecords, read_service_records
from bluegreen.components.consul.route_claims import claim_route, read_route_book
from bluegreen.components.model.bake import disagreement
from bluegreen.components.model.live import (
    ColourChange, dependencies_shape, disagreement_note, refusal, serving_colour
)
from bluegreen.components.model.config import (
    OBJECT_KEYS, STRING_KEYS, PlatformSecrets, ServiceConfig, StackConfig, parse_platform_secrets,
    parse_stack_config, stack_deploying, stack_file, stack_values
)
from bluegreen.components.model.entry import check_entry, check_routes
from bluegreen.components.model.manifest import Manifest, load_manifest
from bluegreen.components.model.release import ColourPlan, plan_colours, secret_fingerprint
from bluegreen.components.model.routes import RouteBook, RouteUse, route_holder, route_taken
from bluegreen.components.model.split import serving_colours
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import (
    call_routes, context_digest, docker_name, format_time, offline_colour, service_network
)
from bluegreen.components.platform.address_pools import (
    EngineNetworks, check_capacity, new_networks, private_network_hosts, read_engine_networks
)
from bluegreen.components.service.colour_slot import planned_shape


@dataclass(frozen=True)
class StackInputs:
    """Everything `run` wires, read and checked once."""

    stack: StackConfig
    secrets: pulumi.Output[dict] | None          # bluegreen:secrets, still secret
    platform_secrets: PlatformSecrets
    manifests: dict[str, Manifest]               # service -> its manifest
    network_hosts: dict[str, tuple[str, ...]]    # service -> hosts where it has a private network
    reference: pulumi.StackReference | None      # the stack whose `credentials` it deploys with
    records: dict[str, ServiceRecords]           # service -> Consul's records before this update
    checkouts: dict[str, str]                    # service -> content hash of its build context
    plans: dict[str, dict[str, ColourPlan]]      # service -> colour -> the release it runs
    fingerprints: dict[str, dict[str, str]]      # service -> NAME -> its secret's fingerprint
    dependencies: dict[str, str]                 # service -> its linked dependencies' shape
    commits: dict[str, str | None] = field(default_factory=dict)  # service -> its commit's time


def read_inputs(root: str, config: StackConfig | None = None,
                known_token: str | None = None) -> StackInputs:
    """Reads and validates the stack's inputs; raises pulumi.RunError (nothing registered yet).

    `config` replaces this stack's bluegreen:* config, and `known_token` the deployer token its
    platform's outputs hold (the component package's resources are given both)."""
    try:
        stack = config or read_config(root)
        secrets = read_secrets(stack.stack)
        platform_secrets = read_platform_secrets(stack.stack)
        manifests = {s.name: load_manifest(s.manifest, (stack.source, f"bluegreen.services.{s.name}.manifest"))
                     for s in stack.services}
        check_manifests(stack, manifests)
        network_hosts = plan_networks(stack, manifests) if stack.services else {}
        reference = platform_reference(stack) \
            if known_token is None and (stack.services or stack.platform_stack) else None
        token = known_token or (last_deployer_token(reference, stack.environment)
                                if reference is not None and stack.services else "")
        records = {s.name: read_records(stack, s, token) for s in stack.services}
        checkouts = {name: context_digest(m.build.context, exclude_files=(m.path,))
                     for name, m in manifests.items()}
        plans = {s.name: plan_colours(stack.source, s, manifests[s.name], checkouts[s.name],
                                      records[s.name].releases, records[s.name].slots)
                 for s in stack.services}
        disagreements = [problem for s in stack.services if (problem := disagreement(
            stack.source, stack.environment, s, records[s.name].live, records[s.name].bake))]
        dependencies = {name: dependencies_shape(m, stack.base_image) for name, m in manifests.items()}
        check_live_untouched(stack, manifests, plans, records, dependencies)
        check_splits(stack, records)
    except ConfigError as error:
        raise pulumi.RunError(f"invalid configuration: {error}") from None
    except ConsulError as error:
        raise pulumi.RunError(f"cannot read the release records, so nothing was changed: {error}") from None
    if disagreements:
        raise pulumi.RunError(f"the stack disagrees with the bake watchdog: {disagreements[0]}")
    check_route_claims(stack, manifests, token, root)
    for s in stack.services:
        note = disagreement_note(stack.source, stack.environment, s, records[s.name].live)
        if note:
            pulumi.log.warn(note)
    return StackInputs(stack, secrets, platform_secrets, manifests, network_hosts, reference,
                       records, checkouts, plans, secret_fingerprints() if secrets else {},
                       dependencies, commits={name: commit_time(m.build.context)
                                              for name, m in manifests.items()})


def commit_time(directory: str) -> str | None:
    """When the last commit of a build context was made, for its releases' lead time (model.
    scoreboard); None when the context is not in git or its tracked files hold uncommitted
    changes: what it builds then is no commit."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", directory, *args, "--", "."], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None
    changes, seconds = git("status", "--porcelain", "--untracked-files=no"), git("log", "-1", "--format=%ct")
    if changes is None or changes or not seconds:
        return None
    return format_time(datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc))


def serving_change(stack: StackConfig, settings: ServiceConfig, manifests: dict[str, Manifest],
                   plans: dict[str, ColourPlan], records: ServiceRecords,
                   dependencies: str) -> ColourChange | None:
    """What this update plans for the colour the alias names (None before the first flip)."""
    colour = serving_colour(records.live)
    return None if colour is None else \
        colour_change(stack, settings, manifests, plans, records, colour, dependencies)


def colour_change(stack: StackConfig, settings: ServiceConfig, manifests: dict[str, Manifest],
                  plans: dict[str, ColourPlan], records: ServiceRecords, colour: str,
                  dependencies: str) -> ColourChange:
    """What this update plans for one colour's containers, against Consul's record of them;
    `dependencies` is the service's live.dependencies_shape, made once per update."""
    recorded_version, recorded_shape = records.slots.get(colour), records.shapes.get(colour)
    plan = plans.get(colour)
    if plan is None:
        return ColourChange(colour, False, None, recorded_version, None, recorded_shape,
                            recorded_dependencies=records.dependencies.get(colour))
    manifest = manifests[settings.name]
    shape = planned_shape(
        recorded_shape, stack=stack.environment_stack or stack.stack, version=plan.version,
        spec=plan.spec, overrides=settings.colours[colour].environment,
        hosts=tuple(stack.hosts[h] for h in settings.hosts), replicas=settings.replicas,
        calls=call_routes(manifest.calls, {name: m.route for name, m in manifests.items()}),
        proxy_port=stack.platform.proxy_port if stack.platform else None)
    return ColourChange(colour, True, plan.version, recorded_version, shape, recorded_shape,
                        dependencies, records.dependencies.get(colour))


def check_live_untouched(stack: StackConfig, manifests: dict[str, Manifest],
                         plans: dict[str, dict[str, ColourPlan]],
                         records: dict[str, ServiceRecords], dependencies: dict[str, str]) -> None:
    """Refuses (ConfigError) an update that would touch a colour the alias names, or one a split
    or cohort sends clients to, unless the change acknowledges exactly that (model.live)."""
    for settings in stack.services:
        record = records[settings.name]
        change = serving_change(stack, settings, manifests, plans[settings.name], record,
                                dependencies[settings.name])
        problem = change and refusal(stack.source, stack.environment, settings, change)
        for colour, reason in serving_colours(record.split, serving_colour(record.live)).items():
            problem = problem or refusal(
                stack.source, stack.environment, settings,
                colour_change(stack, settings, manifests, plans[settings.name], record, colour,
                              dependencies[settings.name]), split_reason=reason)
        if problem:
            raise problem


def check_splits(stack: StackConfig, records: dict[str, ServiceRecords]) -> None:
    """A split needs a version on the colour it sends traffic to, and a flip ends one: an update
    that flips (live: other than the alias's) with a share left in the stack file is refused."""
    for settings in stack.services:
        serving = serving_colour(records[settings.name].live) or settings.live
        if not settings.split.percent:
            continue
        where = f"bluegreen.services.{settings.name}.split.percent"
        if settings.live != serving:
            raise ConfigError(stack.source, where, f"this update flips {settings.name} to "
                              f"{settings.live}, and a flip ends the split: remove split.percent "
                              f"(or keep live: {serving} to go on splitting)")
        if offline_colour(serving) not in settings.colours:
            raise ConfigError(stack.source, where, f"the split sends {settings.split.percent}% to "
                              f"{offline_colour(serving)}, which has no version configured; add "
                              f"{offline_colour(serving)}: {{version: ...}} first")


def check_manifests(stack: StackConfig, manifests: dict[str, Manifest]) -> None:
    """Each manifest names the service its stack key does, and a service that calls others runs
    on hosts whose bridge address (where it reaches the proxy) is known; no two share a route."""
    for settings in stack.services:
        manifest = manifests[settings.name]
        check_entry(stack.source, settings, manifest)
        for host in settings.hosts if manifest.calls else ():
            if not stack.hosts[host].bridge_address:
                raise ConfigError(stack.source, f"bluegreen.hosts.{host}.bridgeAddress",
                                  f"{manifest.path} calls {', '.join(manifest.calls)}, so its "
                                  f"host {host} needs its Docker bridge address (e.g. 172.17.0.1) "
                                  "to reach the proxy")
    check_routes(stack.source, manifests)


def check_route_claims(stack: StackConfig, manifests: dict[str, Manifest], token: str,
                       root: str) -> None:
    """Routes are unique per environment, across its stacks (model.routes): refuses a route
    another service holds; an update (not a preview) then claims each route, check-and-set, so
    two stacks updating at once cannot both take one. The last check before anything registers."""
    try:
        book = read_routes(stack, token)
        if book is None:
            return
        for settings in stack.services:
            manifest = manifests[settings.name]
            claim_or_refuse(stack, RouteUse(stack.environment, settings.name, manifest.route,
                                            manifest.path, stack.source), book, token, root)
    except ConfigError as error:
        raise pulumi.RunError(f"invalid configuration, so nothing was changed: {error}") from None
    except ConsulError as error:
        raise pulumi.RunError(f"cannot read or claim the routes of {stack.environment}, so "
                              f"nothing was changed: {error}") from None


def claim_or_refuse(stack: StackConfig, use: RouteUse, book: RouteBook, token: str,
                    root: str) -> None:
    """Raises ConfigError when another service holds `use`'s route, naming the stack that deploys
    it; an update claims a free route (a preview only checks)."""
    holder = route_holder(book, use.service, use.route)
    if holder is None and not pulumi.runtime.is_dry_run():
        holder = claim_route(stack.service_host(use.service).consul, use.environment, use.service,
                             use.route, token)
    if holder is not None:
        owner = stack_deploying(stack.environment_stack or stack.stack, holder, root)
        raise route_taken(use, holder, owner, book)


def read_routes(stack: StackConfig, token: str) -> RouteBook | None:
    """The routes of the stack's environment (None before the platform's first update has made
    its Consul: no other service can hold one yet)."""
    if not stack.services:
        return None
    try:
        return read_route_book(stack.service_host(stack.services[0]).consul, stack.environment,
                               token or "anonymous")
    except ConsulError:
        if platform_not_up_yet(stack, token):
            return None
        raise


def read_config(root: str) -> StackConfig:
    """Reads every bluegreen:* value of the current stack once and validates it."""
    config = pulumi.Config("bluegreen")
    values = {key: config.get(key) for key in STRING_KEYS}
    values.update({key: config.get_object(key) for key in OBJECT_KEYS})
    values = {key: value for key, value in values.items() if value is not None}
    return parse_stack_config(pulumi.get_stack(), stack_values(pulumi.get_stack(), values, root), root)


def read_secrets(stack: str) -> pulumi.Output[dict] | None:
    """bluegreen:secrets, {service: {NAME: value}}, set with `pulumi config set --secret --path`;
    it stays an Output so values are never plain in state, previews or the policy pack."""
    raw = pulumi.runtime.get_config("bluegreen:secrets")  # presence only; the value stays secret
    if raw is None or raw.strip() in ("", "{}", "null"):
        return None
    if not pulumi.runtime.is_config_secret("bluegreen:secrets"):
        raise ConfigError(stack_file(stack), "bluegreen.secrets",
                          "holds plain-text values; remove them and set each with `pulumi config set "
                          "--secret --path 'bluegreen:secrets.<service>.<NAME>' VALUE`")
    secrets = pulumi.Config("bluegreen").require_secret_object("secrets")

    def checked(values) -> dict:
        if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
            raise ConfigError(stack_file(stack), "bluegreen.secrets",
                              "must map service names to {NAME: value}; set entries with "
                              "`pulumi config set --secret --path 'bluegreen:secrets.<service>.<NAME>' VALUE`")
        return values

    return secrets.apply(checked)


def secret_fingerprints() -> dict[str, dict[str, str]]:
    """Per service, a fingerprint of each secret's value: the release records which secrets it
    ran with, never what they were (read_secrets has checked their shape)."""
    values = json.loads(pulumi.runtime.get_config("bluegreen:secrets") or "{}")
    return {service: {name: secret_fingerprint(service, name, str(value))
                      for name, value in sorted(entries.items())}
            for service, entries in values.items() if isinstance(entries, dict)}


def read_platform_secrets(stack: str) -> PlatformSecrets:
    """bluegreen:platformSecrets: credentials a site supplies instead of generated ones. Checked
    here, before anything registers, without quoting a value; used only as secret Outputs."""
    raw = pulumi.runtime.get_config("bluegreen:platformSecrets")
    if raw is None or raw.strip() in ("", "{}", "null"):
        return PlatformSecrets()
    if not pulumi.runtime.is_config_secret("bluegreen:platformSecrets"):
        raise ConfigError(stack_file(stack), "bluegreen.platformSecrets",
                          "holds plain-text values; remove them and set each with `pulumi config set "
                          "--secret --path 'bluegreen:platformSecrets.<name>' VALUE`")
    try:
        values = json.loads(raw)
    except ValueError:
        raise ConfigError(stack_file(stack), "bluegreen.platformSecrets",
                          "must be a mapping of names to values") from None
    return parse_platform_secrets(stack, values)


def platform_reference(stack: StackConfig) -> pulumi.StackReference:
    """The stack whose `credentials` output this one deploys with: the platform stack it
    references, or itself (its outputs as its last update left them) when it owns the platform."""
    if stack.platform_stack:
        return pulumi.StackReference(stack.platform_stack)
    own = f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack.stack}"
    return pulumi.StackReference(f"{stack.stack}-last-update", stack_name=own)


def last_deployer_token(reference: pulumi.StackReference, environment: str) -> str:
    """The environment's deployer token as the platform stack's last update left it, read now:
    the release records are read with it before anything else registers. Empty before the
    platform's first update (or before it made a token for the environment: the program's
    `deployer_token` then says how)."""
    details = _sync_await(reference.get_output_details("credentials"))
    return deployer_token_in(details.secret_value if details.secret_value is not None else details.value,
                             environment)


def known_deployer_token(credentials: pulumi.Output[dict], environment: str) -> str:
    """The environment's deployer token in a platform's `credentials` as known now (empty while
    unknown, as in a preview before the platform exists)."""
    return deployer_token_in(_sync_await(credentials.future()), environment)


def deployer_token_in(values: object, environment: str) -> str:
    """The environment's deployer token in a `credentials` value ('' when it holds none)."""
    tokens = values.get("consulDeployerTokens") if isinstance(values, dict) else None
    return (tokens or {}).get(environment, "") if isinstance(tokens, dict) else ""


def read_records(stack: StackConfig, settings: ServiceConfig, token: str) -> ServiceRecords:
    """Consul's records of a service, through the agent of its first host, with the deployer's
    `token`. Unreachable Consul is an error, except on a platform's first deployment (its Consul
    container does not exist yet, or it has not finished once): without the records, released
    versions could not be told from new ones."""
    host = stack.service_host(settings)
    try:
        return read_service_records(host.consul, stack.environment, settings.name,
                                    token or "anonymous")
    except ConsulError:
        if platform_not_up_yet(stack, token):
            return ServiceRecords()
        raise


def platform_not_up_yet(stack: StackConfig, token: str) -> bool:
    """Whether the first update of the platform this stack owns has not finished: its Consul does
    not exist yet, or its outputs hold no deployer token yet (and Consul denies anonymous reads)."""
    return stack.platform is not None and (not token or not container_exists(
        stack.hosts[stack.platform.host].docker, docker_name(stack.stack, "consul", stack.platform.host)))


def read_networks(stack: StackConfig, hosts) -> dict[str, EngineNetworks]:
    """Address pools and bridge networks of the engines of `hosts`."""
    return {h: read_engine_networks(h, stack.hosts[h].docker, stack.source) for h in hosts}


def plan_networks(stack: StackConfig, manifests: dict) -> dict[str, tuple[str, ...]]:
    """Per service, the hosts where it has a private network; refuses (before anything is
    registered) an update that needs more new networks on a host than its engine can make."""
    engines = read_networks(stack, sorted({h for s in stack.services for h in s.hosts}))
    plan = {s.name: private_network_hosts(stack.environment, s.name, s.hosts,
                                          bool(manifests[s.name].dependencies), engines)
            for s in stack.services}
    wanted: dict[str, set[str]] = {}
    for service, hosts in plan.items():
        for host in hosts:
            wanted.setdefault(host, set()).add(service_network(stack.environment, service))
    check_capacity(stack.source, new_networks(wanted, engines), engines)
    return plan


def container_exists(docker_host: str, name: str) -> bool:
    result = subprocess.run(["docker", "-H", docker_host, "container", "inspect", name],
                            capture_output=True)
    return result.returncode == 0
