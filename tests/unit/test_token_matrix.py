"""docs/platform-teams.md's token matrix says what each token holds: checked against the ACL rules
the program gives every token it makes (run under mocks), read as Consul reads them.

Consul's semantics, as its policy authorizer has them: default deny; for a key, service, node or
session an exact rule (`key`) decides its own name, else the longest matching prefix rule
(`key_prefix`); `write` grants list and read, `list` grants read, `deny` grants nothing. A cell is
a verdict drawn from probes on sample names (an actor's own environment, service and host and
others'); a parenthesis after a ✓/— verdict is a comment and is not checked, nor is `held by`."""

import itertools
import os
import re
from dataclasses import dataclass, field

import pytest

from bluegreen.components.model import election
from bluegreen.components.naming import (
    acl_token_name, alias_key, approval_key, audit_prefix, bake_key, bridge_listen_key, catalogue_key,
    config_prefix, delivery_key, drain_timeout_key, history_prefix, hooks_key, lock_key,
    preview_from_key, prometheus_address_key, proxies_key, release_prefix, route_key, slot_key,
    split_key, watchdog_lock_key
)
from unit_harness import ACL_TOKEN, ROOT, run_program

from test_wiring import STACK, config

DOC = os.path.join(ROOT, "docs", "platform-teams.md")
SECTION = "## Least privilege: ACLs, tokens and credentials"
ENVIRONMENTS, HOSTS = ("integration", "production"), ("local", "second")
SAMPLE_ENV, SAMPLE_SERVICE, SAMPLE_HOST = "production", "vizconfig", "local"
OTHER_ENV, OTHER_SERVICE, OTHER_HOST = "staging", "billing", "elsewhere"
# Consul's built-in global-management policy (its own, not this project's): the management token.
GLOBAL_MANAGEMENT = """acl = "write"
agent_prefix "" { policy = "write" }
event_prefix "" { policy = "write" }
key_prefix "" { policy = "write" }
keyring = "write"
node_prefix "" { policy = "write" }
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" { policy = "write" }
service_prefix "" { policy = "write" }
session_prefix "" { policy = "write" }
"""
# The matrix has a column for these kinds of rule; any other kind a token holds fails the test.
DECIDED_KINDS = {"key", "service", "node", "session", "acl"}
LEVELS = {"deny": set(), "read": {"read"}, "list": {"read", "list"}, "write": {"read", "list", "write"}}
RULE = re.compile(r'^(\w+?)(_prefix)? "([^"]*)" \{ policy = "(deny|read|list|write)" \}$')
SCALAR = re.compile(r'^(\w+) = "(deny|read|list|write)"$')


# --- Consul's rules -------------------------------------------------------------------------------

@dataclass
class Policy:
    exact: dict[tuple[str, str], str] = field(default_factory=dict)
    prefix: dict[tuple[str, str], str] = field(default_factory=dict)
    scalar: dict[str, str] = field(default_factory=dict)

    def kinds(self) -> set[str]:
        return {kind for kind, _ in (*self.exact, *self.prefix)} | set(self.scalar)


def parse_rules(text: str) -> Policy:
    """The HCL the rules module writes: one rule a line; any other shape fails, naming the line."""
    policy = Policy()
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        if scalar := SCALAR.match(line):
            policy.scalar[scalar[1]] = scalar[2]
        elif rule := RULE.match(line):
            kind, is_prefix, name, level = rule.groups()
            (policy.prefix if is_prefix else policy.exact)[(kind, name)] = level
        else:
            pytest.fail(f"cannot read the ACL rule {line!r}: teach parse_rules its shape")
    return policy


def allowed(policy: Policy, kind: str, name: str, access: str) -> bool:
    """Exact rule first, then the longest matching prefix rule, else deny."""
    level = policy.exact.get((kind, name))
    if level is None:
        matching = [p for (k, p) in policy.prefix if k == kind and name.startswith(p)]
        level = policy.prefix[(kind, max(matching, key=len))] if matching else "deny"
    return access in LEVELS[level]


# --- who a token is, and what it may reach --------------------------------------------------------

@dataclass(frozen=True)
class Actor:
    policy: Policy
    environment: str | None = None
    service: str | None = None
    host: str | None = None

    def own(self) -> tuple[str, str]:
        return self.environment or SAMPLE_ENV, self.service or SAMPLE_SERVICE

    def node(self) -> str:
        return self.host or SAMPLE_HOST


# Each KV area the matrix may name, as sample keys for an environment and a service.
AREAS = {
    "config": lambda e, s: (config_prefix(e, s) + "greeting",),
    "aliases": lambda e, s: (alias_key(e, s),),
    "routes": lambda e, s: (route_key(e, s),),
    "catalogue": lambda e, s: (catalogue_key(e, s),),
    "slots": lambda e, s: (slot_key(e, s, "blue"),),
    "history": lambda e, s: (history_prefix(e, s) + "1.0.0",),
    "bakes": lambda e, s: (bake_key(e, s),),
    "audit trail": lambda e, s: (audit_prefix(e, s) + "20260101T000000.000000Z-flip",),
    "locks": lambda e, s: (lock_key(e, s),),
    "splits": lambda e, s: (split_key(e, s),),
    "approvals": lambda e, s: (approval_key(e, s),),
    "hooks": lambda e, s: (hooks_key(e, s),),
    "release records": lambda e, s: (release_prefix(s) + "1.0.0",),
    "delivery figures": lambda e, s: (delivery_key(e, s),),
    "`bluegreen/proxy/drain-timeout`": lambda e, s: (drain_timeout_key(),),
    "the other proxy settings": lambda e, s: (preview_from_key(), prometheus_address_key(),
                                              bridge_listen_key(), proxies_key()),
    "the watchdog's leader key": lambda e, s: (watchdog_lock_key(),),
    "anything else under `bluegreen/`": lambda e, s: ("bluegreen/unlisted/key",),
    "KV outside `bluegreen/`": lambda e, s: ("site/key",),
}
PHRASES = {**{name: {name} for name in AREAS},
           "proxy settings": {"`bluegreen/proxy/drain-timeout`", "the other proxy settings"},
           "other environments' config": {"config"}, "alias": {"aliases"},
           "all of `bluegreen/`": set(AREAS) - {"KV outside `bluegreen/`"}}
SCOPES = {(True, True, True): "all", (True, True, False): "its own environment's",
          (True, False, False): "its own", (False, False, False): None}


def _samples(actor: Actor) -> list[tuple[str, str]]:
    environment, service = actor.own()
    return [(environment, service), (environment, OTHER_SERVICE), (OTHER_ENV, OTHER_SERVICE)]


def _uniform(results: list[bool], what: str) -> bool:
    if len(set(results)) != 1:
        pytest.fail(f"{what} holds for some of its keys only: name them apart in AREAS and the matrix")
    return results[0]


def _reaches(actor: Actor, area: str, access: str, sample: tuple[str, str], listing=False) -> bool:
    keys = AREAS[area](*sample)
    names = [key.rsplit("/", 1)[0] + "/" if listing else key for key in keys]
    return _uniform([allowed(actor.policy, "key", n, access) for n in names], f"{access} of {area}")


def area_scope(actor: Actor, area: str, access: str) -> str | None:
    """How far `access` reaches in an area: all, the actor's environment, its own keys, or not."""
    reach = tuple(_reaches(actor, area, access, sample) for sample in _samples(actor))
    if reach not in SCOPES:
        pytest.fail(f"{access} of {area} reaches {reach} of (own, own environment, other): no scope says that")
    return SCOPES[reach]


def read_level(actor: Actor, area: str) -> str:
    """`list` where every key it reads can also be listed (a recursive read), else `read`."""
    reads = [s for s in _samples(actor) if _reaches(actor, area, "read", s)]
    lists = {_reaches(actor, area, "list", s, listing=True) for s in reads}
    if len(lists) != 1:
        pytest.fail(f"{area}: listed in some scopes and not others")
    return "list" if lists == {True} else "read"


# --- the columns ----------------------------------------------------------------------------------

def own_scope(actor: Actor) -> str:
    return "its own" if actor.service else "its own environment's" if actor.environment else "all"


def read_own_config(actor: Actor) -> str:
    sample = actor.own()
    if not _reaches(actor, "config", "read", sample):
        return "—"
    return "✓" if _reaches(actor, "config", "list", sample, listing=True) else "read, not list"


def read_other_kv(actor: Actor) -> dict[str, tuple[str, str]]:
    found = {area: (scope, read_level(actor, area)) for area in AREAS
             if (scope := area_scope(actor, area, "read"))}
    if found.get("config", ("",))[0] == own_scope(actor):
        del found["config"]     # its own configuration: the column before
    return found


def write_kv(actor: Actor) -> dict[str, tuple[str, str]]:
    return {area: (scope, "write") for area in AREAS
            if area != "aliases" and (scope := area_scope(actor, area, "write"))}


def write_aliases(actor: Actor) -> str:
    scope = area_scope(actor, "aliases", "write")
    return {"all": "✓", "its own environment's": "its own environment only",
            "its own": "its own alias only", None: "—"}[scope]


def _nodes(actor: Actor, access: str) -> str:
    reach = (allowed(actor.policy, "node", actor.node(), access),
             allowed(actor.policy, "node", OTHER_HOST, access))
    return {(True, True): "all", (True, False): "own", (False, False): "none"}.get(reach, "other")


def _services(actor: Actor, access: str) -> str:
    names = (SAMPLE_SERVICE, OTHER_SERVICE, election.SERVICE)
    reach = tuple(allowed(actor.policy, "service", name, access) for name in names)
    return {(True, True, True): "all", (False, False, True): "itself",
            (False, False, False): "none"}.get(reach, "other")


def register(actor: Actor) -> str:
    verdicts = {("all", "none"): "✓", ("itself", "none"): "itself only", ("none", "own"): "its own node",
                ("none", "none"): "—", ("all", "all"): "every service and node"}
    return _decided(verdicts, (_services(actor, "write"), _nodes(actor, "write")), "register")


def read_services(actor: Actor) -> str:
    verdicts = {("all", "all"): "✓", ("all", "own"): "its own node's", ("none", "none"): "—"}
    return _decided(verdicts, (_services(actor, "read"), _nodes(actor, "read")), "read services")


def sessions(actor: Actor) -> str:
    reach = tuple(allowed(actor.policy, "session", node, access)
                  for access in ("read", "write") for node in (actor.node(), OTHER_HOST))
    verdicts = {(True, True, True, True): "✓", (True, False, True, False): "its own node",
                (False, False, False, False): "—"}
    return _decided(verdicts, reach, "sessions")


def create_tokens(actor: Actor) -> str:
    return _decided({"write": "✓", None: "—"}, actor.policy.scalar.get("acl"), "acl")


def _decided(verdicts: dict, reach, what: str) -> str:
    if reach not in verdicts:
        pytest.fail(f"{what}: {reach} has no verdict in the matrix's vocabulary; add one here and in the doc")
    return verdicts[reach]


AREA_COLUMNS = {"read other KV / KV root": read_other_kv, "write KV (but aliases)": write_kv}
COLUMNS = {"read own config": read_own_config, **AREA_COLUMNS, "write aliases (flip)": write_aliases,
           "register / deregister": register, "read services, health": read_services,
           "sessions": sessions, "create tokens": create_tokens}
UNCHECKED = ("token (`bluegreen-…`)", "held by")


# --- the table ------------------------------------------------------------------------------------

def matrix() -> tuple[list[str], list[list[str]]]:
    """The header and rows of the section's table."""
    with open(DOC, encoding="utf-8") as handle:
        text = handle.read()
    assert SECTION in text, f"{DOC} has no section {SECTION!r}"
    lines = text.split(SECTION, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table]
    return rows[0], rows[2:]


def parse_areas(cell: str, read: bool) -> dict[str, tuple[str, str]]:
    """`—`, or clauses split by `; `: [its own[ environment's]] area, area[ (list|read)]; a level
    applies to its clause and the clauses before it that have none."""
    if cell == "—":
        return {}
    found, pending = {}, []
    for clause in cell.split("; "):
        level = re.search(r" \((list|read)\)$", clause)
        clause = clause[:level.start()] if level else clause
        pending.append(clause)
        if level or not read:
            for waiting in pending:
                found.update(_clause_areas(waiting, level[1] if level else "write"))
            pending = []
    assert not pending, f"{cell!r}: end the cell with (list) or (read)"
    return found


def _clause_areas(clause: str, level: str) -> dict[str, tuple[str, str]]:
    scope = next((s for s in ("its own environment's", "its own") if clause.startswith(s + " ")), "all")
    items = re.split(r", | and ", clause.removeprefix(scope + " ") if scope != "all" else clause)
    areas: set[str] = set()
    for item in items:
        included, _, excluded = item.partition(" but ")
        areas |= _phrase(included) - (_phrase(excluded) if excluded else set())
    return {area: (scope, level) for area in areas}


def _phrase(words: str) -> set[str]:
    if words not in PHRASES:
        pytest.fail(f"the matrix names {words!r}; the test knows {sorted(PHRASES)}")
    return PHRASES[words]


def expected(column: str, cell: str):
    if column in AREA_COLUMNS:
        return parse_areas(cell, read=column.startswith("read"))
    return cell.split(" (", 1)[0]


# --- the tokens the program makes -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tokens() -> dict[str, Policy]:
    """Every token a platform-owning stack makes (two hosts, two environments), by name."""
    cfg = config(hosts=HOSTS)
    cfg["platform"]["environments"] = list(ENVIRONMENTS)
    return {r.inputs["name"]: parse_rules(r.inputs["rules"])
            for r in run_program(cfg, stack=STACK) if r.type == ACL_TOKEN}


def row_pattern(cell: str) -> re.Pattern:
    """`service-<env>-<svc>` as a pattern of token names, its placeholders as groups."""
    pattern = re.escape(acl_token_name(cell.strip("`")))
    for placeholder, group in (("<env>", "environment"), ("<svc>", "service"), ("<host>", "host")):
        pattern = pattern.replace(re.escape(placeholder), f"(?P<{group}>[a-z0-9-]+)")
    return re.compile(pattern + "$")


def actors_of(cell: str, tokens: dict[str, Policy]) -> list[tuple[str, Actor]]:
    """The tokens a row speaks of, each with its own environment, service and host."""
    if cell == "management":
        return [("management (Consul's global-management)", Actor(parse_rules(GLOBAL_MANAGEMENT)))]
    if cell == "none (anonymous)":
        return [("anonymous (no policy)", Actor(Policy()))]
    pattern = row_pattern(cell)
    found = [(name, Actor(policy, **match.groupdict()))
             for name, policy in tokens.items() if (match := pattern.match(name))]
    assert found, f"the matrix's row {cell} names no token the program makes ({sorted(tokens)})"
    return found


def difference(holds, says) -> str:
    if not isinstance(holds, dict):
        return f"it holds {holds!r}"
    areas = sorted(set(holds) | set(says))
    return "; ".join(f"{a}: holds {holds.get(a)}, the matrix says {says.get(a)}"
                     for a in areas if holds.get(a) != says.get(a))


def verdicts(actor: Actor) -> dict:
    return {column: judge(actor) for column, judge in COLUMNS.items()}


# --- tests ----------------------------------------------------------------------------------------

def test_the_matrix_has_a_checked_column_for_each_kind_of_right():
    header, _ = matrix()
    assert header[:2] == list(UNCHECKED)
    assert header[2:] == list(COLUMNS), "a column the test cannot decide: teach COLUMNS its probes"


def test_every_token_the_program_makes_has_one_row(tokens):
    _, rows = matrix()
    patterns = [row_pattern(row[0]) for row in rows if row[0].startswith("`")]
    for name in tokens:
        assert sum(bool(p.match(name)) for p in patterns) == 1, f"{name}: no row (or several) in {DOC}"


def test_no_token_holds_a_kind_of_right_the_matrix_has_no_column_for(tokens):
    for name, policy in tokens.items():
        assert policy.kinds() <= DECIDED_KINDS, f"{name} holds {policy.kinds() - DECIDED_KINDS}: add a column"


def test_each_row_says_what_its_tokens_hold(tokens):
    header, rows = matrix()
    for row in rows:
        if row[2] == "everything":
            continue    # the next test
        for name, actor in actors_of(row[0], tokens):
            for column, cell in zip(header[2:], row[2:]):
                holds, says = COLUMNS[column](actor), expected(column, cell)
                assert holds == says, f"{name}, {column}: {cell!r}; {difference(holds, says)}"


def test_every_key_rule_reaches_only_areas_the_matrix_names(tokens):
    """A rule on a tree no area samples would widen a token unseen by the probes."""
    keys = {key for area in AREAS for e in (*ENVIRONMENTS, OTHER_ENV)
            for s in (SAMPLE_SERVICE, OTHER_SERVICE) for key in AREAS[area](e, s)}
    for name, policy in tokens.items():
        unreached = [rule for kind, rule in policy.exact if kind == "key" and rule not in keys] + [
            rule for kind, rule in policy.prefix if kind == "key" and not any(k.startswith(rule) for k in keys)]
        assert not unreached, f"{name}: {unreached} reach no area of the matrix; add them to AREAS"


def test_management_holds_everything_every_column_can_say():
    _, rows = matrix()
    row = next(row for row in rows if row[0] == "management")
    assert row[2] == "everything" and not any(row[3:])
    everything = Policy(prefix={(kind, ""): "write" for kind in DECIDED_KINDS}, scalar={"acl": "write"})
    assert verdicts(actors_of("management", {})[0][1]) == verdicts(Actor(everything))


def test_the_evaluator_reads_rules_as_consul_does():
    policy = parse_rules('key_prefix "a/" { policy = "write" }\nkey_prefix "a/b/" { policy = "deny" }\n'
                         'key "a/b/c" { policy = "read" }\nkey_prefix "a/l" { policy = "list" }\n')
    assert allowed(policy, "key", "a/x", "write") and not allowed(policy, "key", "a/b/x", "read")
    assert allowed(policy, "key", "a/b/c", "read") and not allowed(policy, "key", "a/b/c", "list")
    assert allowed(policy, "key", "a/l/x", "list") and not allowed(policy, "key", "a/l/x", "write")
    assert not allowed(policy, "key", "b", "read") and not allowed(policy, "service", "a/x", "read")
