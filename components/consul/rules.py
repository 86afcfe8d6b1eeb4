"""ACL rules: what each actor's token may do, as Consul policy HCL. Pure functions.

Consul denies everything not granted (`default_policy = "deny"`), and recursive KV reads need
`list` on the prefix (`enable_key_list_policy`), so every grant below is all an actor gets."""

from __future__ import annotations

import json

from bluegreen.components.model import election
from bluegreen.components.naming import (
    KV_ROOT, alias_key, config_prefix, delivery_prefix, drain_timeout_key, history_root,
    release_root, watchdog_lock_key
)

# The KV trees a deployer writes in its own environment (`<tree>/<environment>/...`: aliases,
# config, routes, catalogue, slots, history, bakes, audit trail, deploy locks, splits, approvals
# of held flips and hooks) and the ones the proxy renders (catalogue, history and bakes: the
# catalogue page; proxy: its own settings). The proxy's are as its templates list them
# (`tree "bluegreen/aliases"`, no trailing slash).
DEPLOYER_TREES = ("aliases", "config", "routes", "catalogue", "slots", "history", "bake", "audit",
                  "locks", "splits", "approvals", "hooks")
PROXY_PREFIXES = tuple(f"{KV_ROOT}/{tree}" for tree in (
    "aliases", "routes", "catalogue", "history", "bake", "proxy", "splits", "delivery", "audit"))
# The watchdog: waits on the bakes (and marks them), flips an alias back, notes it in the history;
# `bake` without a slash: it also creates the prefix key it blocks on. A rollout's steps are splits.
WATCHDOG_WRITES = tuple(f"{KV_ROOT}/{tree}" for tree in ("bake", "aliases/", "history/", "splits/"))
WATCHDOG_READS = (f"{KV_ROOT}/routes/", f"{KV_ROOT}/hooks/")


def _rule(kind: str, name: str, policy: str) -> str:
    return f"{kind} {json.dumps(name)} {{ policy = {json.dumps(policy)} }}"


def _rules(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def agent_rules(node: str) -> str:
    """A Consul agent (acl.tokens.agent): its own node, and reading services to sync them."""
    return _rules(_rule("node", node, "write"), _rule("service_prefix", "", "read"))


def registrator_rules(node: str) -> str:
    """A host's registrator: re-registers the containers its host runs, through its own agent."""
    return _rules(_rule("service_prefix", "", "write"), _rule("node", node, "read"))


def proxy_rules() -> str:
    """consul-template: passing instances of every service and the keys it renders."""
    return _rules(_rule("service_prefix", "", "read"), _rule("node_prefix", "", "read"),
                  *(_rule("key_prefix", prefix, "list") for prefix in PROXY_PREFIXES))


def deployer_rules(environment: str) -> str:
    """`pulumi up` of `environment`, its delivery commands and the pipeline's steps in it:
    registrations and gates (instance health), its own trees in KV (a flip of another
    environment is refused), release records (keyed by service: every environment promotes the
    same ones), the deploy locks' sessions; it reads the rest of the records (promote compares
    environments) but no other environment's configuration."""
    return _rules(_rule("service_prefix", "", "write"), _rule("node_prefix", "", "read"),
                  # A deploy lock's session is made on the node of the agent it is asked of.
                  _rule("session_prefix", "", "write"), _rule("key", watchdog_lock_key(), "read"),
                  _rule("key_prefix", f"{KV_ROOT}/", "list"),
                  _rule("key_prefix", f"{KV_ROOT}/config/", "deny"),
                  _rule("key_prefix", release_root(), "write"),
                  *(_rule("key_prefix", f"{KV_ROOT}/{tree}/{environment}/", "write")
                    for tree in DEPLOYER_TREES))


def watchdog_rules() -> str:
    """The bake watchdog: reads the new colour's checks, the bakes and routes; writes a bake's
    outcome, the alias it flips (back, or after a rollout's steps; check-and-set), the version's
    history and a rollout's split. The watchdogs of a platform register themselves and hold the
    leader key with a session on their node (model.election)."""
    return _rules(_rule("service_prefix", "", "read"), _rule("node_prefix", "", "read"),
                  _rule("service", election.SERVICE, "write"), _rule("session_prefix", "", "write"),
                  _rule("key", watchdog_lock_key(), "write"),
                  *(_rule("key_prefix", prefix, "write") for prefix in WATCHDOG_WRITES),
                  *(_rule("key_prefix", prefix, "list") for prefix in WATCHDOG_READS))


def delivery_exporter_rules() -> str:
    """The delivery metrics exporter: lists the release histories, writes the delivery keys."""
    return _rules(_rule("key_prefix", history_root(), "list"),
                  _rule("key_prefix", delivery_prefix(), "write"))


def issuer_rules() -> str:
    """Issues each service's token. Consul (1.16) has no narrower right to create tokens than
    acl:write, so this token is kept out of every container and used by nothing else."""
    return _rules('acl = "write"')


def service_rules(environment: str, service: str) -> str:
    """A service's containers: read (and list) their own configuration prefix, and read their own
    alias and the proxy's drain bound (a service ends its long-lived streams across a flip)."""
    return _rules(_rule("key_prefix", config_prefix(environment, service), "list"),
                  _rule("key", alias_key(environment, service), "read"),
                  _rule("key", drain_timeout_key(), "read"))
