#!/usr/bin/env python3
"""The bake watchdog: after a flip, it watches the new colour for the service's bake time and
flips the alias back when the colour breaches.

Idle, it only waits: a Consul blocking query on the bake records (naming.bake_prefix) returns when
one of them changes. While a record says `baking`, for that service it
- probes the stable URI through the proxy, PROBE_RATE requests/s, keeping the answers of the last
  WINDOW_S seconds (answers the proxy says came from the previous colour do not count);
- reads the new colour's checks from Consul's health API once a second;
and a 5xx share above the record's maxErrorRate (over at least MIN_SAMPLES answers and MIN_ERRORS
errors), or a colour without instances or with a critical check for CHECK_GRACE_S, is a breach.
Where the platform runs Prometheus (PROMETHEUS_URL), it judges by the real traffic first: every
ANALYSIS_S it asks for the new colour's stable requests over the record's window (analysis.py:
success rate and p99 against the record's `traffic` bounds). A failing verdict is a breach; while
the verdict passes it sends no probes; with too little traffic (or Prometheus unreachable) it says
so and probes as above. The outcome records which it judged by (`judgedBy`: traffic or probes).
A record `rolling` is a flip through a progressive rollout (rollout.py): it sets the split of each
step in turn, judges the new colour's share of the stable traffic, aborts (split back to 0%) on a
failing verdict, and after the last step flips the alias in one transaction with the split's end
and the record, which then bakes as any flip's.
On a breach it writes, in one Consul transaction, the alias back to the previous colour with a
check-and-set (the alias must still hold the flip the record describes: never over a newer flip),
the record's outcome (rolled-back, why, when) and `rolledBackAt`/`rollbackReason` on that version's
history entry. When the bake time ends without a breach, the record says `baked`.

It never flips to a colour none of whose instances pass (the record then ends `breached`), and a
bake whose alias moved meanwhile ends `superseded`. SIGUSR1 prints its counters (wakes, probes,
health reads, KV reads): with nothing baking, only wakes and KV reads ever grow.

A platform runs two watchdogs; one acts, the other stands by (election.py): the acting one holds
the leader key (naming.watchdog_lock_key) with a Consul session that ends when its process dies (an
agent's TCP check on a port it listens on), hangs or freezes (a TTL check its heartbeat passes
only while the main loop keeps to its steps' timeouts; past them it exits) or its host leaves the
cluster (serfHealth). The other
blocks on the key and takes it when it goes, then resumes every bake from its record. Every write
carries a check of the session on the key, so only the holder's writes ever land.

Environment: CONSUL_HTTP_ADDR (the platform host's agent), PROXY_URL (the proxy's base URL),
CONSUL_HTTP_TOKEN_FILE (a file holding its ACL token), PROBE_RATE, WINDOW_S, PROMETHEUS_URL
(optional), WATCHDOG_ID (its name; its container's), WATCHDOG_HOST. It talks to Consul through the
platform's client (components.consul.api) and writes its flips as check-and-set transactions
(api.kv_cas_many), as the delivery commands do.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from bluegreen.components.consul import api
from bluegreen.components.model import election, hooks, rollout
from bluegreen.components.model.analysis import FAIL, PASS, Bounds, Verdict, analyse, traffic_queries
from bluegreen.components.naming import (
    PROXY_COLOUR_HEADER, alias_key, bake_outcome, bake_prefix, format_time, history_prefix, hooks_key,
    parse_time, route_key, split_key, watchdog_lock_key, went_live_entry
)

PROXY = os.environ.get("PROXY_URL", "http://127.0.0.1:8080").rstrip("/")
PROBE_RATE = float(os.environ.get("PROBE_RATE", "5"))      # requests/s per baking service
WINDOW_S = float(os.environ.get("WINDOW_S", "10"))         # the sliding window of answers
MIN_SAMPLES = 10            # fewer answers say nothing about a rate
MIN_ERRORS = 3              # one or two stray errors never roll back
CHECK_GRACE_S = 2.0         # how long a critical check (or no instance) may last
PROBE_TIMEOUT_S = 2.0       # a probe that takes longer counts as an error
WAIT_S = 300                # a blocking query returns at the latest after this
PROMETHEUS = os.environ.get("PROMETHEUS_URL", "").rstrip("/")
AGENT = api.LocalAgent.from_environment()
IDENT = os.environ.get("WATCHDOG_ID") or socket.gethostname()   # its container's name
HOST = os.environ.get("WATCHDOG_HOST", "")                      # the platform host it runs on
ANALYSIS_S = 2.0            # how often a bake asks Prometheus
ACTIVE = ("baking", "rolling")   # the records it watches
STALL_GRACE_S = 15.0        # how long a step may overrun its own timeout before the loop counts as hung

COUNTS: collections.Counter[str] = collections.Counter()   # what it did: probes, health and KV reads, wakes


# --- pure decisions -------------------------------------------------------------------------

def error_rate_breach(samples, now: float, window_s: float, max_error_rate: float,
                      min_samples: int = MIN_SAMPLES, min_errors: int = MIN_ERRORS,
                      uri: str = "the stable URI") -> str | None:
    """Why the answers of the last `window_s` seconds breach the error budget, or None.

    `samples` are (monotonic time, status), status 0 for a probe that got no answer in time."""
    recent = [status for at, status in samples if now - at <= window_s]
    errors = sum(1 for status in recent if status == 0 or status >= 500)
    if len(recent) < min_samples or errors < min_errors or errors <= max_error_rate * len(recent):
        return None
    return (f"5xx on {uri}: {errors} of {len(recent)} answers ({errors / len(recent):.0%}) in the "
            f"last {window_s:g}s, above the {max_error_rate:.0%} allowed")


def checks_problem(colour: str, instances: list[dict]) -> str | None:
    """What is wrong with a colour's instances (Consul health API entries), or None."""
    if not instances:
        return f"no instance of {colour} is registered"
    for entry in instances:
        for check in entry.get("Checks") or []:
            if check.get("Status") == "critical":
                output = " ".join((check.get("Output") or "").split())[:200]
                return (f"check '{check.get('Name')}' on node {check.get('Node')} is critical"
                        + (f": {output}" if output else ""))
    return None


def checks_breach(problem: str | None, since: float | None, now: float,
                  grace_s: float = CHECK_GRACE_S) -> str | None:
    """A checks problem breaches once it has lasted `grace_s` (since: when it was first seen)."""
    if problem is None or since is None or now - since < grace_s:
        return None
    return f"{problem} (for {now - since:.1f}s)"


def flip_is_current(record: dict, record_index: int, alias: str | None, alias_index: int) -> bool:
    """Whether the alias still holds the flip the record describes: its colour, written no later
    than the record (a flip writes the alias, then or with its record)."""
    return alias == record.get("colour") and 0 < alias_index <= record_index


# --- liveness: a hung watchdog gives the key up ------------------------------------------------

@dataclass
class Liveness:
    """By when the main loop must have made progress (monotonic): every step that waits (a call
    to Consul, the proxy or Prometheus) moves it to its own timeout plus STALL_GRACE_S, and back to
    STALL_GRACE_S once it returns."""
    deadline: float = float("inf")

    @contextlib.contextmanager
    def step(self, timeout_s: float):
        self.deadline = time.monotonic() + timeout_s + STALL_GRACE_S
        try:
            yield
        finally:
            self.deadline = time.monotonic() + STALL_GRACE_S


LIVENESS = Liveness()


def consul(call, *args, **kwargs):
    """`call` of the Consul client (components.consul.api) on this watchdog's agent, as one step of
    the main loop: its deadline is the call's timeout (a blocking query's wait) and a leader
    election's wait."""
    with LIVENESS.step(api.blocking_timeout(kwargs.get("wait_s", 0.0)) + api.ELECTION_WAIT_S):
        return call(AGENT.address, *args, token=AGENT.token, **kwargs)


def heartbeat() -> None:
    """Passes this watchdog's progress check (election.progress_check_id) every HEARTBEAT_S while
    the main loop keeps its deadline. A loop that hung past it ends the process (Docker starts it
    again); a frozen process passes nothing: either way its session ends and the standby leads."""
    check = election.progress_check_id(IDENT)
    while True:
        time.sleep(election.HEARTBEAT_S)
        if time.monotonic() > LIVENESS.deadline:
            say(f"{IDENT}: HUNG (no progress within {STALL_GRACE_S:g}s of its last step's timeout); "
                f"exiting so that its session ends")
            os._exit(70)
        try:
            api.agent_check_pass(AGENT.address, check, AGENT.token, timeout_s=election.HEARTBEAT_S)
        except (OSError, ValueError, api.ConsulError):
            pass   # the agent away: the TTL lapses, as it should when nothing reaches it


# --- Consul and the proxy ---------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    key: str
    value: dict
    index: int


def read_records(index: int = 0) -> tuple[dict[str, Entry], int]:
    """The bake records; with `index`, a blocking query that returns once they change."""
    COUNTS["kv_reads"] += 1
    found, next_index = consul(api.kv_entries, bake_prefix(), index=index, wait_s=WAIT_S if index else 0.0)
    entries = {}
    for key, item in found.items():
        try:
            value = json.loads(item.value or "null")
        except ValueError:
            continue
        if isinstance(value, dict):
            entries[key] = Entry(key, value, item.index)
    return entries, next_index


def kv_get(key: str) -> tuple[str | None, int]:
    COUNTS["kv_reads"] += 1
    return consul(api.kv_get_indexed, key)


def instances(service: str, environment: str, colour: str, passing: bool = False) -> list[dict]:
    COUNTS["health_reads"] += 1
    return [entry for entry in consul(api.health_service, service, passing=passing)
            if {environment, colour} <= set(entry["Service"].get("Tags") or [])]


def probe(url: str, ignore_colour: str) -> int | None:
    """The status of one GET (0: no answer in time), or None when the answer came from the
    previous colour or the proxy is not reachable at all (that says nothing about the release)."""
    COUNTS["probes"] += 1
    request = urllib.request.Request(url, headers={"User-Agent": "bluegreen-watchdog",
                                                   "Connection": "close"})
    try:
        with LIVENESS.step(PROBE_TIMEOUT_S), \
                urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            response.read()
            status, colour = response.status, response.headers.get(PROXY_COLOUR_HEADER)
    except urllib.error.HTTPError as error:
        status, colour = error.code, error.headers.get(PROXY_COLOUR_HEADER)
    except TimeoutError:
        return 0
    except urllib.error.URLError as error:
        return 0 if isinstance(error.reason, TimeoutError) else None
    except OSError:
        return None
    return None if colour == ignore_colour else status


# --- one bake ------------------------------------------------------------------------------------

@dataclass
class Bake:
    entry: Entry
    environment: str
    service: str
    url: str = ""
    samples: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    problem: str | None = None
    problem_since: float | None = None
    breach: str | None = None
    logged_at: float = 0.0
    judged: str = "probes"          # what the last decision went by: traffic or probes
    verdict: str = ""               # the last traffic verdict, in words
    outcome: str | None = None      # the last traffic verdict's outcome (None: none)
    stale: bool = False             # it wrote its record: wait for the records to be read again
    next_analysis: float = 0.0

    @property
    def record(self) -> dict:
        return self.entry.value

    def label(self) -> str:
        r = self.record
        return f"{self.environment}/{self.service} {r.get('colour')} {r.get('version')}"


def start(entry: Entry) -> Bake:
    environment, service = entry.key[len(bake_prefix()):].split("/", 1)
    route, _ = kv_get(route_key(environment, service))
    bake = Bake(entry, environment, service)
    bake.url = f"{PROXY}/{environment}/{(route or service).strip()}/"
    if entry.value.get("status") == "rolling":
        say(f"rolling out {bake.label()}: steps {entry.value.get('steps')}% of the stable traffic, "
            f"{entry.value.get('stepS')}s each, judged by its real traffic")
        return bake
    say(f"baking {bake.label()} until {entry.value.get('until')}: probing {bake.url} at "
        f"{PROBE_RATE:g}/s, checks of {entry.value.get('colour')}, max 5xx share "
        f"{entry.value.get('maxErrorRate')}")
    return bake


def read_checks(bake: Bake, now: float) -> None:
    problem = checks_problem(bake.record["colour"],
                             instances(bake.service, bake.environment, bake.record["colour"]))
    if problem is None:
        bake.problem, bake.problem_since = None, None
    elif bake.problem_since is None:
        bake.problem, bake.problem_since = problem, now
    else:
        bake.problem = problem


def moved_on(bake: Bake) -> bool:
    """Ends a bake whose flip is no longer the alias's (flipped by hand, or a newer flip)."""
    alias, alias_index = kv_get(alias_key(bake.environment, bake.service))
    if bake.record.get("status") == "rolling":
        if alias == bake.record.get("previous"):
            return False
    elif flip_is_current(bake.record, bake.entry.index, alias, alias_index):
        return False
    if finish(bake, "superseded", f"the alias moved to {alias or 'nothing'} during the bake"):
        say(f"{bake.label()}: the alias moved to {alias} during the bake; not watching it any more")
    return True


def finish(bake: Bake, status: str, reason: str = "", extra: dict | None = None,
           now: datetime.datetime | None = None) -> bool:
    """Writes the record's outcome (and `extra` {key: (value, index)}) in one check-and-set
    transaction; False when something changed meanwhile (the caller looks again)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    record = {**bake.record, "judgedBy": bake.judged}
    writes = {bake.entry.key: (json.dumps(bake_outcome(record, status, now, reason),
                                          sort_keys=True), bake.entry.index)}
    writes.update(extra or {})
    return transact(writes)


def history_update(environment: str, service: str, version: str | None, changes: dict) -> dict:
    """{history key: (entry with `changes`, its index)} for a version that has an entry."""
    if not version:
        return {}
    key = history_prefix(environment, service) + version
    value, index = kv_get(key)
    if not value:
        return {}
    entry = json.loads(value)
    if "liveAt" in changes:   # a flip to it: `firstLiveAt` keeps when it first went live
        entry = went_live_entry(entry, changes["liveAt"])
    return {key: (json.dumps({**entry, **changes}, sort_keys=True), index)}


def roll_back(bake: Bake, breach: str, wall: datetime.datetime) -> bool:
    """Flips the alias back for `breach`; True when the bake is over (rolled back, the alias moved on, or time
    is up), False to look again on the next tick."""
    record, key = bake.record, alias_key(bake.environment, bake.service)
    alias, alias_index = kv_get(key)
    if not flip_is_current(record, bake.entry.index, alias, alias_index):
        say(f"{bake.label()}: breach ({breach}), but the alias says {alias} since a later "
            f"write: not touching it")
        return finish(bake, "superseded", f"{breach}; the alias moved to {alias} meanwhile")
    previous = record["previous"]
    if not instances(bake.service, bake.environment, previous, passing=True):
        if wall >= parse_time(record["until"]):
            return finish(bake, "breached", f"{breach}; not rolled back: no instance of "
                                            f"{previous} passed its checks")
        if time.monotonic() - bake.logged_at >= 5:
            bake.logged_at = time.monotonic()
            say(f"{bake.label()}: breach ({breach}), but no instance of {previous} passes "
                f"its checks: not flipping to it; looking again")
        return False
    now = format_time(wall)
    extra = {key: (previous, alias_index)}
    extra.update(history_update(bake.environment, bake.service, record.get("version"),
                                {"rolledBackAt": now, "rollbackReason": breach}))
    if record.get("previousVersion") != record.get("version"):
        extra.update(history_update(bake.environment, bake.service, record.get("previousVersion"),
                                    {"liveAt": now}))
    if not finish(bake, "rolled-back", breach, extra, now=wall):
        say(f"{bake.label()}: the rollback transaction lost a check-and-set; looking again")
        return False
    say(f"ROLLED BACK {bake.label()}: alias {key} {record['colour']} -> {previous}: {breach}")
    told(bake, hooks.ROLLBACK, record["colour"], previous, record.get("previousVersion"), breach)
    return True


def tick(bake: Bake, now: float, wall: datetime.datetime) -> bool:
    """One decision (from the traffic when it says enough, else from a probe); True when this
    bake is over."""
    if bake.record.get("status") == "rolling":
        return roll_out(bake, now, wall)
    if bake.breach:   # found earlier and the roll-back must be tried again: judged as it was found
        return roll_back(bake, bake.breach, wall)
    if now >= bake.next_analysis:
        bake.next_analysis = now + ANALYSIS_S
        judge_traffic(bake, wall)
    if bake.judged == "probes":
        status = probe(bake.url, bake.record.get("previous", ""))
        if status is not None:
            bake.samples.append((now, status))
        bake.breach = bake.breach or error_rate_breach(
            bake.samples, now, WINDOW_S, float(bake.record.get("maxErrorRate", 0.05)),
            uri=bake.url[len(PROXY):])
    bake.breach = bake.breach or checks_breach(bake.problem, bake.problem_since, now)
    if bake.breach:
        return roll_back(bake, bake.breach, wall)
    if wall >= parse_time(bake.record["until"]):
        if finish(bake, "baked"):
            say(f"BAKED {bake.label()}: no breach in its bake time (judged by {bake.judged})")
            return True
        return False
    if now - bake.logged_at >= 5:
        bake.logged_at = now
        recent = [s for at, s in bake.samples if now - at <= WINDOW_S]
        errors = sum(1 for s in recent if s == 0 or s >= 500)
        say(f"{bake.label()}: traffic {bake.verdict or 'not analysed'}; probes {len(recent)} "
            f"answers, {errors} errors in the last {WINDOW_S:g}s; checks {bake.problem or 'passing'}; "
            f"{counters()}")
    return False


def traffic_bounds(record: dict, wall: datetime.datetime) -> Bounds | None:
    """The record's bounds on real traffic (None: it has none, or Prometheus is not there). The
    window starts at the flip at the earliest (but spans 10 s at least): the colour's stable
    traffic from before (an earlier release it ran live) says nothing about this one."""
    traffic = record.get("traffic")
    if not PROMETHEUS or not isinstance(traffic, dict):
        return None
    start = record["stepSince"] if record.get("status") == "rolling" else record["since"]
    since_flip = (wall - parse_time(start)).total_seconds()
    window_s = max(10, min(int(float(traffic["windowS"])), int(since_flip) + 1))
    return Bounds(min_success_rate=float(traffic["minSuccessRate"]),
                  max_p99_s=float(traffic["maxP99S"]), window_s=window_s)


def judge(verdict: Verdict | None, colour: str) -> tuple[str, str | None]:
    """(what the bake goes by, the breach) from a traffic verdict (None: no verdict)."""
    if verdict is None or verdict.outcome not in (PASS, FAIL):
        return "probes", None
    return "traffic", f"real traffic on {colour}: {verdict.reason}" if verdict.outcome == FAIL else None


def judge_traffic(bake: Bake, wall: datetime.datetime) -> None:
    """Asks Prometheus about the new colour's stable traffic; says when the judgement changes."""
    bounds = traffic_bounds(bake.record, wall)
    if bounds is None:
        return
    colour = bake.record["colour"]
    try:
        by_status, p99 = (prometheus_query(q) for q in traffic_queries(
            bake.environment, bake.service, colour, bounds.window_s))
        found = analyse(by_status, p99, bounds)
        verdict: Verdict | None = found
        words = f"{found.outcome}: {found.reason}"
    except (OSError, ValueError) as error:
        verdict, words = None, f"Prometheus unreachable ({error})"
    judged, breach = judge(verdict, colour)
    if judged != bake.judged or (words != bake.verdict and breach):
        say(f"{bake.label()}: judging by {judged}: {words}")
    bake.judged, bake.verdict, bake.outcome = judged, words, verdict.outcome if verdict else None
    bake.breach = bake.breach or breach


def prometheus_query(expression: str) -> dict:
    """One instant query's JSON answer."""
    COUNTS["analyses"] += 1
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with LIVENESS.step(3), urllib.request.urlopen(url, timeout=3) as response:
        return json.loads(response.read())


# --- one rollout (rollout.py) ---------------------------------------------------------------------

def roll_out(bake: Bake, now: float, wall: datetime.datetime) -> bool:
    """One look at a rollout; True when it is over (aborted, or flipped with no bake to follow)."""
    record = bake.record
    if bake.stale:
        return False
    if not PROMETHEUS:
        return finish(bake, "aborted", "no Prometheus on this platform to judge the steps by",
                      split_write(bake, 0))
    if record.get("stepSince") is None:
        return step_to(bake, rollout.started(record, wall, 0))
    if now >= bake.next_analysis:
        bake.next_analysis = now + ANALYSIS_S
        judge_traffic(bake, wall)
    elapsed = (wall - parse_time(record["stepSince"])).total_seconds()
    # A failing step is named by its breach ("real traffic on <colour>: ..."), as a bake's is.
    action, why = rollout.decide(record, bake.outcome, bake.breach or bake.verdict, elapsed)
    if action == rollout.ABORT:
        over = finish(bake, "aborted", why, split_write(bake, 0), now=wall)
        if over:
            say(f"ABORTED the rollout of {bake.label()}: {why}; the split is back to 0%")
        return over
    if action == rollout.ADVANCE:
        say(f"{bake.label()}: {why}; next step")
        return step_to(bake, rollout.started(record, wall, record["step"] + 1))
    if action == rollout.FLIP:
        return rolled_out(bake, wall, why)
    if now - bake.logged_at >= 5:
        bake.logged_at = now
        say(f"{bake.label()}: rollout step {record['step'] + 1} ({rollout.percent(record)}%), "
            f"{elapsed:.0f}s of {record['stepS']:g}s; traffic {bake.verdict or 'not analysed'}")
    return False


def step_to(bake: Bake, record: dict) -> bool:
    """Writes the record with its next step and that step's split in one transaction (False:
    the rollout goes on; the records are read again within a second)."""
    writes = {bake.entry.key: (json.dumps(record, sort_keys=True), bake.entry.index),
              **split_write(bake, rollout.percent(record))}
    if transact(writes):
        bake.stale = True
        say(f"{bake.label()}: rollout step {record['step'] + 1} of {len(record['steps'])}: "
            f"{rollout.percent(record)}% of the stable traffic to {record['colour']}")
    return False


def rolled_out(bake: Bake, wall: datetime.datetime, why: str) -> bool:
    """The last step passed: the alias moves (check-and-set), the split ends and the record bakes
    (or ends baked), in one transaction; True when nothing is left to watch."""
    record, key = bake.record, alias_key(bake.environment, bake.service)
    alias, alias_index = kv_get(key)
    done = {**rollout.flipped(record, wall), "judgedBy": bake.judged}
    writes = {key: (record["colour"], alias_index), **split_write(bake, 0),
              bake.entry.key: (json.dumps(done, sort_keys=True), bake.entry.index),
              **history_update(bake.environment, bake.service, record.get("version"),
                               {"liveAt": format_time(wall)})}
    if alias != record.get("previous") or not transact(writes):
        say(f"{bake.label()}: the flip after the rollout lost a check-and-set; looking again")
        return False
    bake.stale = True
    say(f"ROLLED OUT {bake.label()}: {why}; alias {key} {record['previous']} -> {record['colour']}")
    told(bake, hooks.FLIP, record["previous"], record["colour"], record.get("version"), why)
    return done["status"] != "baking"


def told(bake: Bake, event: str, before: str, after: str, version: str | None, why: str) -> None:
    """The service's hooks (naming.hooks_key, model.hooks: the rollback or afterFlip hook, the
    notification) hear of a flip the watchdog made; a hook that fails is said, never retried."""
    try:
        value, _ = kv_get(hooks_key(bake.environment, bake.service))
        wanted = hooks.Hooks.from_record(json.loads(value) if value else None)
    except (OSError, TypeError, ValueError) as error:
        say(f"{bake.label()}: its hooks are unreadable ({error}); nobody was told")
        return
    payload = hooks.flip_payload(event=event, service=bake.service, environment=bake.environment,
                                 before=before, after=after, version=version, digest=None,
                                 actor="watchdog")
    for url, body in ((wanted.rollback if event == hooks.ROLLBACK else wanted.after, payload),
                      (wanted.notify, hooks.notification(payload, why))):
        if url:
            post_hook(url, body, bake)


def post_hook(url: str, body: dict, bake: Bake) -> None:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with LIVENESS.step(hooks.NOTIFY_TIMEOUT_S), \
                urllib.request.urlopen(request, timeout=hooks.NOTIFY_TIMEOUT_S):
            COUNTS["hooks"] += 1
    except (OSError, ValueError) as error:
        say(f"{bake.label()}: {url} was not told ({type(error).__name__}; ignored)")


def split_write(bake: Bake, percent: int) -> dict:
    """{split key: (its record sending `percent` to the rollout's colour, its index)}: the
    stack's stickiness and cohorts stay as they are."""
    key = split_key(bake.environment, bake.service)
    text, index = kv_get(key)
    current = json.loads(text) if text else {"sticky": {"cookie": True}, "cohorts": []}
    return {key: (json.dumps({**current, "colour": bake.record["colour"], "percent": percent},
                             sort_keys=True), index)}


def transact(writes: dict) -> bool:
    """{key: (value, index)} written with check-and-set in one transaction, or none of them; none
    either unless this watchdog's session holds the leader key (election.guard)."""
    return consul(api.kv_cas_many, writes, held={watchdog_lock_key(): LEADER.session or "none"})


def bake_all(entries: dict[str, Entry]) -> None:
    """Watches every baking record until none is left; the records are read again once a second
    (a newer flip replaces a bake) and whenever a bake ends."""
    bakes: dict[str, Bake] = {}
    next_read = None          # None: `entries` are fresh
    while True:
        now = time.monotonic()
        if next_read is None or now >= next_read:
            if next_read is not None:
                entries, _ = read_records()
            baking = {k: e for k, e in entries.items() if e.value.get("status") in ACTIVE}
            if not baking or not holding():
                return
            bakes = {k: bakes[k] if k in bakes and bakes[k].entry.index == e.index else start(e)
                     for k, e in baking.items()}
            for key, bake in list(bakes.items()):
                if moved_on(bake):
                    del bakes[key]
                else:
                    read_checks(bake, now)
            next_read = now + 1.0
        wall = datetime.datetime.now(datetime.timezone.utc)
        for key in list(bakes):
            if tick(bakes[key], time.monotonic(), wall):
                del bakes[key]
                next_read = time.monotonic()
        time.sleep(max(0.0, 1.0 / PROBE_RATE - (time.monotonic() - now)))


# --- which watchdog acts (election.py) ------------------------------------------------------------

@dataclass
class Leader:
    port: int = 0                   # where the agent's check finds this process alive
    session: str | None = None      # its session (None: none made yet, or it ended)
    acting: bool = False            # it held the key when it last looked
    index: int = 0                  # the key's index: a standby's blocking query


LEADER = Leader()


def listen() -> int:
    """Opens the port the agent's TCP check connects to: it answers while this process lives."""
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=accept_forever, args=(server,), daemon=True).start()
    return server.getsockname()[1]


def accept_forever(server: socket.socket) -> None:
    while True:
        connection, _ = server.accept()
        connection.close()


def new_session() -> str:
    """Registers this watchdog again (removing its previous registration ends the session of a
    previous run of it, which may still hold the key) and makes a session tied to its check."""
    consul(api.agent_deregister, IDENT)
    consul(api.agent_register, election.registration(IDENT, LEADER.port))
    return consul(api.session_create_from, body=election.session_body(IDENT))


def session_valid() -> str | None:
    """Its session while Consul still knows it, else None."""
    if LEADER.session is None:
        return None
    return LEADER.session if consul(api.session_exists, LEADER.session) else None


def key_holder(index: int = 0) -> tuple[str | None, str, int]:
    """(the session holding the leader key, the key's value, the index); with `index`, a
    blocking query that returns once the key changes."""
    COUNTS["kv_reads"] += 1
    entry, next_index = consul(api.kv_entry, watchdog_lock_key(), index=index,
                               wait_s=WAIT_S if index else 0.0)
    if entry is None:
        return None, "", next_index
    return entry.session or None, entry.value, next_index


def holding() -> bool:
    """Whether this watchdog still holds the key; says so when it lost it."""
    holder, value, _ = key_holder()
    if LEADER.acting and holder != LEADER.session:
        say(f"{IDENT}: lost the leader key (now {value or 'nobody'}); standing by")
        LEADER.acting = False
    return LEADER.acting


def await_lead() -> None:
    """Returns once this watchdog holds the leader key; meanwhile it blocks on the key."""
    while True:
        holder, value, index = key_holder(LEADER.index)
        LEADER.session = session_valid()
        action = election.step(LEADER.session, holder)
        if action == election.NEW_SESSION:
            LEADER.session, LEADER.index = new_session(), 0
        elif action == election.ACQUIRE:
            LEADER.index = 0
            record = election.holder_record(IDENT, HOST, format_time(datetime.datetime.now(
                datetime.timezone.utc)))
            if consul(api.kv_acquire, watchdog_lock_key(), record, LEADER.session):
                break
        elif action == election.LEAD:
            break
        else:
            if LEADER.index == 0:
                say(f"{IDENT}: standing by; acting: {value}")
            # A lower index means Consul's state was reset: start over (Consul's advice).
            LEADER.index = index if index >= LEADER.index else 0
    LEADER.acting, LEADER.index = True, 0
    say(f"{IDENT}: ACTING (holds {watchdog_lock_key()}); the bakes in the records are mine")


def say(message: str) -> None:
    print(f"watchdog: {message}", flush=True)


def counters() -> str:
    return " ".join(f"{name}={COUNTS[name]}"
                    for name in ("wakes", "probes", "analyses", "health_reads", "kv_reads"))


def anchor() -> None:
    """Makes the bake prefix exist as a folder key: a blocking query on a prefix without keys
    wakes on every KV write anywhere, one on an existing prefix only on changes under it."""
    try:
        consul(api.kv_cas, bake_prefix(), "", 0)
    except Exception as error:  # noqa: BLE001 - without it the watchdog still works, only wakes more
        say(f"cannot create {bake_prefix()} ({error}); every KV write will wake the watchdog")


def main() -> None:
    # `docker exec <watchdog> sh -c 'kill -USR1 1'` prints what it did so far: proof of idleness. (Not
    # `docker kill --signal USR1`: Docker 20.10 then counts the container as stopped by hand and
    # no longer restarts it when it dies.)
    signal.signal(signal.SIGUSR1, lambda *_: say(f"counters: {counters()}"))
    say(f"{IDENT}: watching {AGENT.address}/v1/kv/{bake_prefix()} (proxy {PROXY}, Prometheus "
        f"{PROMETHEUS or 'none: judging by probes'}) while it holds {watchdog_lock_key()}; "
        f"{counters()}")
    LEADER.port = listen()
    LIVENESS.deadline = time.monotonic() + STALL_GRACE_S
    threading.Thread(target=heartbeat, daemon=True).start()
    index = 0
    while True:
        try:
            if not LEADER.acting:
                await_lead()
                anchor()
                index = 0
            entries, new_index = read_records(index)
            # A lower index means Consul's state was reset: start over (Consul's advice).
            index = new_index if new_index >= index else 0
            COUNTS["wakes"] += 1
            if not holding():
                continue
            baking = [k for k, e in entries.items() if e.value.get("status") in ACTIVE]
            say(f"{len(entries)} bake record(s), {len(baking)} baking; {counters()}")
            if baking:
                bake_all(entries)
                say(f"nothing baking any more; {counters()}")
        except Exception as error:  # noqa: BLE001 - keep watching through agent restarts
            say(f"{type(error).__name__}: {error}; retrying in 2s")
            index, LEADER.acting, LEADER.index = 0, False, 0
            time.sleep(2)
        time.sleep(0.1)   # bounds the wake rate whatever Consul answers


if __name__ == "__main__":
    main()
