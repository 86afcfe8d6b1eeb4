"""Bake time: the stack config, the record every flip writes, the watchdog's decisions (a breach
over a sliding window, never over a newer flip), the program refusing to re-flip a release the
watchdog rolled back, and the wiring (the record after the alias; the watchdog on the platform)."""

import dataclasses
import datetime
import json
from types import SimpleNamespace

import pytest

from bluegreen.components import naming
from bluegreen.components.model import analysis, rollout
from bluegreen.components.consul.records import ServiceRecords
from bluegreen.components.model.bake import disagreement, flip_record, flips, rollout_start
from bluegreen.components.model.config import ColourConfig, ServiceConfig, parse_stack_config
from bluegreen.components.model.release import rollback_target
from bluegreen.components.model.validation import ConfigError
from unit_harness import CONSUL_KEY, ROOT, ProgramFailed, run_program
from consul_agent import Response
from consul_image import load_script

import test_wiring

NOW = datetime.datetime(2026, 11, 26, 14, 0, 0, tzinfo=datetime.timezone.utc)

watchdog = load_script("watchdog.py", "bake_watchdog")


def settings(bake_s=60.0, rate=0.05, live="green"):
    return ServiceConfig(name="vizconfig", manifest="/x/service.yaml", live=live,
                         colours={"blue": ColourConfig("1.0.0"), "green": ColourConfig("2.0.0")},
                         hosts=("local",), bake_s=bake_s, bake_max_error_rate=rate)


# --- stack config ------------------------------------------------------------------------------

def stack(**service):
    values = {"environment": "production", "platformStack": "org/bluegreen/platform",
              "hosts": {"local": {"docker": "unix:///var/run/docker.sock",
                                  "consul": "http://127.0.0.1:8500"}},
              "services": {"vizconfig": {"manifest": "services/vizconfig/service.yaml",
                                         "live": "blue", "blue": {"version": "1.0.0"}, **service}}}
    return parse_stack_config("production", values, ROOT).services[0]


def test_bake_is_off_by_default_with_a_five_percent_budget():
    service = stack()
    assert service.bake_s == 0 and service.bake_max_error_rate == 0.05


def test_bake_time_and_error_rate_parse():
    service = stack(bakeTime="5m", bakeMaxErrorRate=0.01)
    assert service.bake_s == 300 and service.bake_max_error_rate == 0.01
    assert stack(bakeTime="45s", bakeMaxErrorRate="0.2").bake_max_error_rate == 0.2


@pytest.mark.parametrize("fields, field, words", [
    ({"bakeTime": "5 minutes"}, "bakeTime", "is not a duration; write e.g. 500ms, 2s or 1m"),
    ({"bakeTime": "3s"}, "bakeTime", "write 0s (off) or a duration from 10s to 1440m"),
    ({"bakeTime": "2000m"}, "bakeTime", "write 0s (off) or a duration from 10s to 1440m"),
    ({"bakeTime": "1m", "bakeMaxErrorRate": 1.5}, "bakeMaxErrorRate", "from 0 to below 1, e.g. 0.05"),
    ({"bakeTime": "1m", "bakeMaxErrorRate": "five"}, "bakeMaxErrorRate", "must be a number"),
    ({"bakeTime": "1m", "bakeMaxErrorRate": True}, "bakeMaxErrorRate", "must be a number"),
    ({"bakeMaxErrorRate": 0.1}, "bakeMaxErrorRate", "set bakeTime (e.g. 5m) or remove bakeMaxErrorRate"),
])
def test_bad_bake_settings_name_the_file_the_field_and_the_fix(fields, field, words):
    with pytest.raises(ConfigError) as raised:
        stack(**fields)
    assert str(raised.value).startswith(
        f"stacks/Pulumi.production.yaml: bluegreen.services.vizconfig.{field}: ")
    assert words in str(raised.value)


# --- the record ----------------------------------------------------------------------------------

def test_the_record_names_both_colours_and_the_bake_window():
    record = naming.bake_record(colour="green", previous="blue", version="2.0.0",
                                previous_version="1.0.0", since=NOW, bake_s=90, max_error_rate=0.05)
    assert record == {"colour": "green", "previous": "blue", "version": "2.0.0",
                      "previousVersion": "1.0.0", "since": "2026-11-26T14:00:00Z",
                      "until": "2026-11-26T14:01:30Z", "maxErrorRate": 0.05, "status": "baking"}
    assert naming.parse_time(record["until"]) - naming.parse_time(record["since"]) == \
        datetime.timedelta(seconds=90)


@pytest.mark.parametrize("colour, previous, bake_s, rate", [
    ("green", "green", 60, 0.05), ("red", "blue", 60, 0.05), ("green", "blue", 0, 0.05),
    ("green", "blue", 60, 1.0)])
def test_the_record_refuses_what_no_flip_can_be(colour, previous, bake_s, rate):
    with pytest.raises(ValueError):
        naming.bake_record(colour=colour, previous=previous, version="2", previous_version="1",
                           since=NOW, bake_s=bake_s, max_error_rate=rate)


def test_a_flip_record_comes_from_the_service_settings_and_only_with_a_bake_time():
    record = json.loads(flip_record(settings(bake_s=30, rate=0.1), "green", "blue", "1.0.0", NOW))
    assert (record["version"], record["maxErrorRate"], record["until"]) == \
        ("2.0.0", 0.1, "2026-11-26T14:00:30Z")
    assert flip_record(settings(bake_s=0), "green", "blue", "1.0.0", NOW) is None


def test_only_a_move_from_one_colour_to_the_other_is_a_flip():
    assert flips("blue", "green") and flips("green", "blue")
    assert not flips(None, "blue") and not flips("blue", "blue")


def test_an_outcome_keeps_the_record_and_says_when_and_why():
    record = naming.bake_record(colour="green", previous="blue", version="2.0.0",
                                previous_version="1.0.0", since=NOW, bake_s=60, max_error_rate=0.05)
    outcome = naming.bake_outcome(record, "rolled-back", NOW + datetime.timedelta(seconds=7), "5xx")
    assert outcome == {**record, "status": "rolled-back", "endedAt": "2026-11-26T14:00:07Z",
                       "reason": "5xx"}
    with pytest.raises(ValueError):
        naming.bake_outcome(record, "baking", NOW)


def test_bake_keys_live_under_one_prefix():
    assert naming.bake_key("production", "vizconfig") == "bluegreen/bake/production/vizconfig"
    assert naming.bake_key("production", "vizconfig").startswith(naming.bake_prefix())


# --- the watchdog's decisions ------------------------------------------------------------------

def samples(*statuses, start=0.0, step=0.2):
    return [(start + i * step, status) for i, status in enumerate(statuses)]


def test_a_window_of_5xx_is_a_breach_and_says_how_many():
    reason = watchdog.error_rate_breach(samples(*[503] * 10), now=2.0, window_s=10,
                                        max_error_rate=0.05, uri="/production/vizconfig/")
    assert reason == ("5xx on /production/vizconfig/: 10 of 10 answers (100%) in the last 10s, "
                      "above the 5% allowed")


def test_too_few_answers_or_errors_are_no_breach():
    assert watchdog.error_rate_breach(samples(*[503] * 9), 2.0, 10, 0.05) is None
    assert watchdog.error_rate_breach(samples(*[200] * 18, 500, 500), 4.0, 10, 0.05) is None


def test_the_rate_must_exceed_the_budget():
    window = samples(*[200] * 57, 500, 500, 500)       # exactly 5%
    assert watchdog.error_rate_breach(window, 12.0, 15, 0.05) is None
    assert watchdog.error_rate_breach(window + samples(502, start=12.2), 12.2, 15, 0.05)


def test_answers_older_than_the_window_drop_out():
    window = samples(*[503] * 20) + samples(*[200] * 50, start=5.0)
    assert watchdog.error_rate_breach(window, 14.8, 10, 0.05) is None   # the 5xx are >10s old
    assert watchdog.error_rate_breach(window, 9.0, 10, 0.05)


def test_unanswered_probes_count_as_errors_other_4xx_do_not():
    assert watchdog.error_rate_breach(samples(*[0] * 10), 2.0, 10, 0.05)
    assert watchdog.error_rate_breach(samples(*[404] * 10), 2.0, 10, 0.05) is None


def instance(*statuses, colour="green"):
    return {"Service": {"Tags": ["production", colour]},
            "Checks": [{"Name": f"check {i}", "Node": "local", "Status": s, "Output": "HTTP 503"}
                       for i, s in enumerate(statuses)]}


def test_a_critical_check_or_no_instance_is_a_problem():
    assert watchdog.checks_problem("green", [instance("passing", "passing")]) is None
    assert watchdog.checks_problem("green", [instance("passing", "critical")]) == \
        "check 'check 1' on node local is critical: HTTP 503"
    assert watchdog.checks_problem("green", []) == "no instance of green is registered"


def test_a_problem_breaches_only_once_it_lasted_the_grace():
    assert watchdog.checks_breach("x", since=10.0, now=11.0, grace_s=2) is None
    assert watchdog.checks_breach("x", since=10.0, now=12.5, grace_s=2) == "x (for 2.5s)"
    assert watchdog.checks_breach(None, since=None, now=12.5) is None


def test_the_watchdog_only_flips_back_the_flip_its_record_describes():
    record = {"colour": "green", "previous": "blue"}
    assert watchdog.flip_is_current(record, record_index=40, alias="green", alias_index=39)
    assert watchdog.flip_is_current(record, record_index=40, alias="green", alias_index=40)  # one txn
    assert not watchdog.flip_is_current(record, 40, "blue", 39)      # flipped back meanwhile
    assert not watchdog.flip_is_current(record, 40, "green", 41)     # a newer flip to green
    assert not watchdog.flip_is_current(record, 40, None, 0)


# --- the next pulumi up ------------------------------------------------------------------------

def rolled_back(colour="green", version="2.0.0"):
    record = naming.bake_record(colour=colour, previous=naming.offline_colour(colour), version=version,
                                previous_version="1.0.0", since=NOW, bake_s=60, max_error_rate=0.05)
    return json.dumps(naming.bake_outcome(record, "rolled-back", NOW, "5xx on /x/: 10 of 10"))


def test_re_flipping_a_rolled_back_release_is_a_disagreement_naming_record_reason_and_fix():
    problem = disagreement("stacks/Pulumi.production.yaml", "production", settings(), "blue",
                           rolled_back())
    text = str(problem)
    assert text.startswith("stacks/Pulumi.production.yaml: bluegreen.services.vizconfig.live: "
                           "green (vizconfig 2.0.0) was rolled back to blue by the bake watchdog")
    assert "5xx on /x/: 10 of 10" in text and "bluegreen/bake/production/vizconfig" in text
    assert "live: blue" in text and "green.version: 2.0.1" in text


@pytest.mark.parametrize("live_before, bake, service", [
    ("blue", rolled_back(version="1.9.0"), settings()),          # a new version on green
    ("blue", rolled_back(), settings(live="blue")),              # the rollback accepted
    ("green", rolled_back(), settings()),                        # the alias says green: no flip
    ("blue", None, settings()),
    ("blue", json.dumps({**json.loads(rolled_back()), "status": "baked"}), settings()),
])
def test_no_disagreement_otherwise(live_before, bake, service):
    assert disagreement("f", "production", service, live_before, bake) is None


def test_rollback_skips_a_release_rolled_back_since_it_was_last_live():
    history = {"1.0.0": {"version": "1.0.0", "liveAt": "2026-11-26T13:00:00Z"},
               "2.0.0": {"version": "2.0.0", "liveAt": "2026-11-26T14:00:00Z",
                         "rolledBackAt": "2026-11-26T14:00:09Z"},
               "3.0.0": {"version": "3.0.0"}}
    assert rollback_target(history, "3.0.0")["version"] == "1.0.0"
    history["2.0.0"]["liveAt"] = "2026-11-26T15:00:00Z"   # live again later
    assert rollback_target(history, "3.0.0")["version"] == "2.0.0"


# --- wiring under mocks ------------------------------------------------------------------------

def bake_config(live="green", **extra):
    return test_wiring.config(live=live, bakeTime="1m", **extra)


def records(live, bake=None):
    return {"vizconfig": ServiceRecords(slots={"blue": "1.0.0", "green": "2.0.0"}, live=live,
                                        bake=bake)}


def bake_keys(resources):
    return [r for r in resources if r.type == CONSUL_KEY
            and r.inputs["key"] == f"bluegreen/bake/{test_wiring.ENV}/vizconfig"]


def test_a_flip_writes_the_bake_record_after_the_alias():
    resources = run_program(bake_config(), stack=test_wiring.STACK, records=records("blue"))
    [key] = bake_keys(resources)
    record = json.loads(key.inputs["value"])
    assert (record["colour"], record["previous"], record["version"], record["previousVersion"],
            record["status"]) == ("green", "blue", "2.0.0", "1.0.0", "baking")
    alias = next(r for r in resources if r.type == CONSUL_KEY
                 and r.inputs["key"] == f"bluegreen/aliases/{test_wiring.ENV}/vizconfig")
    assert alias.urn in key.dependencies


def test_an_update_without_a_flip_keeps_the_record_as_it_is():
    existing = rolled_back(colour="blue")
    [key] = bake_keys(run_program(bake_config(), stack=test_wiring.STACK,
                                  records=records("green", existing)))
    assert key.inputs["value"] == existing
    assert bake_keys(run_program(bake_config(), stack=test_wiring.STACK,
                                 records=records("green"))) == []


def test_a_flip_without_bake_time_writes_no_record():
    resources = run_program(test_wiring.config(live="green"), stack=test_wiring.STACK,
                            records=records("blue"))
    assert bake_keys(resources) == []


def test_the_program_refuses_to_re_flip_a_rolled_back_release_before_registering_anything():
    with pytest.raises(ProgramFailed) as raised:
        run_program(bake_config(), stack=test_wiring.STACK,
                    records=records("blue", rolled_back()))
    assert "the stack disagrees with the bake watchdog: " in str(raised.value)
    assert "bluegreen.services.vizconfig.live: green (vizconfig 2.0.0) was rolled back" in str(raised.value)
    # Only the read of the platform's credentials (a StackReference) comes before the refusal.
    assert [r.type for r in raised.value.resources] == ["pulumi:pulumi:StackReference"]


def test_the_platform_runs_two_watchdogs_beside_its_agent_and_proxy():
    deployment = test_wiring.run(test_wiring.config(hosts=("local", "second")))
    containers = deployment.role("watchdog")
    assert len(containers) == 2
    for number, container in enumerate(sorted(containers, key=lambda c: c.inputs["name"]), 1):
        assert container.provider_urn == deployment.provider_of_host("local").urn
        assert container.inputs["networkMode"] == "host"
        assert container.inputs["entrypoints"] == ["python3", "-u", "/usr/local/lib/bluegreen/watchdog.py"]
        envs = container.inputs["envs"]
        assert "CONSUL_HTTP_ADDR=http://127.0.0.1:18500" in envs
        assert "PROXY_URL=http://127.0.0.1:18080" in envs and "PROBE_RATE=5" in envs
        assert f"WATCHDOG_ID={container.inputs['name']}" in envs and "WATCHDOG_HOST=local" in envs
        assert container.inputs["name"].endswith(f"-watchdog-{number}")
        assert container.inputs["memory"] == 64 and container.inputs["restart"] == "unless-stopped"


def test_watchdog_hosts_put_the_standby_on_another_host_beside_that_hosts_agent():
    config = test_wiring.two_proxies_config()
    config["platform"]["watchdogHosts"] = ["local", "second"]
    deployment = test_wiring.run(config)
    containers = sorted(deployment.role("watchdog"), key=lambda c: c.inputs["name"])
    for container, host in zip(containers, ("local", "second"), strict=True):
        assert container.provider_urn == deployment.provider_of_host(host).urn
        envs = container.inputs["envs"]
        assert f"CONSUL_HTTP_ADDR={test_wiring.HOSTS[host]['consul']}" in envs
        assert f"WATCHDOG_HOST={host}" in envs
        # Both probe through the address clients use, which the other host reaches too.
        assert "PROXY_URL=http://10.0.0.100:18080" in envs


# --- the flips outside pulumi up ---------------------------------------------------------------

def test_rollback_and_promote_write_the_bake_record_in_the_flip_transaction(monkeypatch):
    from bluegreen.delivery import flip
    config = parse_stack_config("production", {
        "environment": "production", "platformStack": "org/bluegreen/platform",
        "hosts": {"local": {"docker": "unix:///var/run/docker.sock", "consul": "http://c:8500"}},
        "services": {
            "vizconfig": {"manifest": "services/vizconfig/service.yaml", "live": "blue",
                          "blue": {"version": "1.0.0"}, "green": {"version": "2.0.0"},
                          "bakeTime": "2m"},
            "charts": {"manifest": "services/vizconfig/service.yaml", "live": "green",
                       "blue": {"version": "3.0.0"}, "green": {"version": "4.0.0"}}}}, ROOT)
    viz, charts = config.services
    monkeypatch.setattr(flip, "check_colour", lambda move: 0.0)
    monkeypatch.setattr(flip.consul_api, "kv_get_indexed",
                        lambda _address, key, _token: ("green" if "charts" in key else "blue", 7))
    history = {"bluegreen/history/production/vizconfig/2.0.0":
               json.dumps({"version": "2.0.0", "reference": "r", "liveAt": "2026-01-01T00:00:00Z"})}
    monkeypatch.setattr(flip.consul_api, "kv_get", lambda _address, key, _token: history.get(key))
    sent = {}

    def cas_many(address, writes, token, sets=None):
        sent.update(address=address, writes=writes, token=token, sets=sets)
        return True

    monkeypatch.setattr(flip.consul_api, "kv_cas_many", cas_many)
    flip.flip_together([flip.Move(config, viz, colour="green", expected="blue", token="deployer"),
                        flip.Move(config, charts, colour="blue", expected="green", token="deployer")])
    assert sent["token"] == "deployer"
    assert sent["writes"] == {"bluegreen/aliases/production/vizconfig": ("green", 7),
                              "bluegreen/aliases/production/charts": ("blue", 7)}
    record = json.loads(sent["sets"]["bluegreen/bake/production/vizconfig"])
    assert (record["colour"], record["previous"], record["version"], record["status"]) == \
        ("green", "blue", "2.0.0", "baking")
    assert naming.parse_time(record["until"]) - naming.parse_time(record["since"]) == \
        datetime.timedelta(minutes=2)
    # The release going live records when, in the same transaction (a history entry must exist).
    live = json.loads(sent["sets"]["bluegreen/history/production/vizconfig/2.0.0"])
    assert live["liveAt"] > "2026-01-01T00:00:00Z" and live["reference"] == "r"
    assert "bluegreen/history/production/charts/3.0.0" not in sent["sets"]
    # a flip without bake time ends whatever bake the service had
    assert sent["sets"]["bluegreen/bake/production/charts"] is None


# -- judging by real traffic (Prometheus)

def verdict(outcome, reason="120 requests, success 80.00%"):
    return analysis.Verdict(outcome, 120, 0.8, 0.01, reason)


def test_a_failing_traffic_verdict_is_a_breach_and_a_passing_one_replaces_the_probes():
    assert watchdog.judge(verdict(analysis.FAIL), "green") == \
        ("traffic", "real traffic on green: 120 requests, success 80.00%")
    assert watchdog.judge(verdict(analysis.PASS), "green") == ("traffic", None)


def test_too_little_traffic_or_no_answer_falls_back_to_the_probes():
    assert watchdog.judge(verdict(analysis.TOO_LITTLE), "green") == ("probes", None)
    assert watchdog.judge(None, "green") == ("probes", None)


def test_the_records_traffic_bounds_are_used_only_where_prometheus_runs(monkeypatch):
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    record = json.loads(flip_record(settings(), "green", "blue", "1.0.0", now))
    assert record["traffic"] == {"minSuccessRate": 0.99, "maxP99S": 0.5, "windowS": 60.0}
    later = now + datetime.timedelta(seconds=90)
    monkeypatch.setattr(watchdog, "PROMETHEUS", "")
    assert watchdog.traffic_bounds(record, later) is None
    monkeypatch.setattr(watchdog, "PROMETHEUS", "http://127.0.0.1:9090")
    assert watchdog.traffic_bounds(record, later) == analysis.Bounds(0.99, 0.5, 60)
    assert watchdog.traffic_bounds({k: v for k, v in record.items() if k != "traffic"}, later) is None


def test_the_traffic_window_starts_at_the_flip_but_spans_ten_seconds_at_least(monkeypatch):
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    record = json.loads(flip_record(settings(), "green", "blue", "1.0.0", now))
    monkeypatch.setattr(watchdog, "PROMETHEUS", "http://127.0.0.1:9090")
    windows = [watchdog.traffic_bounds(record, now + datetime.timedelta(seconds=s)).window_s
               for s in (0, 3, 25, 59, 61, 600)]
    assert windows == [10, 10, 26, 60, 60, 60]


def test_traffic_bounds_parse_with_flaggers_defaults():
    service = stack(bakeTime="5m", bakeMinSuccessRate=0.95, bakeMaxP99="250ms", bakeWindow="2m")
    assert (service.bake_min_success_rate, service.bake_max_p99_s, service.bake_window_s) == \
        (0.95, 0.25, 120.0)
    default = stack(bakeTime="5m")
    assert (default.bake_min_success_rate, default.bake_max_p99_s, default.bake_window_s) == \
        (0.99, 0.5, 60.0)


@pytest.mark.parametrize("fields,key,words", [
    ({"bakeMinSuccessRate": 0.99}, "bakeMinSuccessRate", "bakeTime is off"),
    ({"bakeTime": "5m", "bakeMinSuccessRate": 1.5}, "bakeMinSuccessRate", "from 0.5 to 1"),
    ({"bakeTime": "5m", "bakeMaxP99": "2h"}, "bakeMaxP99", "not a duration"),
    ({"bakeTime": "5m", "bakeWindow": "5s"}, "bakeWindow", "10s to 60m"),
])
def test_bad_traffic_bounds_name_the_field(fields, key, words):
    with pytest.raises(ConfigError) as error:
        stack(**fields)
    assert error.value.field == f"bluegreen.services.vizconfig.{key}" and words in str(error.value)


class FakeConsul:
    """The watchdog's Consul calls: KV reads from `kv`, transactions recorded (and accepted)."""

    def __init__(self, kv: dict):
        self.kv, self.transactions = kv, []

    def kv_get(self, key):
        return self.kv.get(key, (None, 0))

    def kv_cas_many(self, address, writes, token, held=None):
        self.transactions.append({key: self.decoded(value) for key, (value, _index) in writes.items()})
        return True

    @staticmethod
    def decoded(text: str):
        return json.loads(text) if text.startswith("{") else text


def rolling_bake(monkeypatch, kv: dict, verdict_outcome: str | None):
    service = dataclasses.replace(settings(bake_s=0.0), rollout=rollout.Rollout((10, 50), 30.0))
    record = rollout.started(json.loads(rollout_start(service, "blue", "1.0.0", NOW)), NOW)
    key = naming.bake_key("production", "vizconfig")
    fake = FakeConsul(kv)
    monkeypatch.setattr(watchdog, "kv_get", fake.kv_get)
    monkeypatch.setattr(watchdog.api, "kv_cas_many", fake.kv_cas_many)
    monkeypatch.setattr(watchdog, "PROMETHEUS", "http://127.0.0.1:9090")
    monkeypatch.setattr(watchdog, "judge_traffic", lambda bake, wall: setattr(bake, "outcome", verdict_outcome))
    bake = watchdog.Bake(watchdog.Entry(key, record, 7), "production", "vizconfig")
    return bake, fake


def test_a_failing_step_aborts_the_rollout_and_ends_the_split(monkeypatch):
    split = naming.split_key("production", "vizconfig")
    bake, fake = rolling_bake(monkeypatch, {split: ('{"colour": "green", "percent": 10, "cohorts": []}', 5)},
                              "fail")
    assert watchdog.roll_out(bake, 1.0, NOW + datetime.timedelta(seconds=3)) is True
    [written] = fake.transactions
    assert written[split]["percent"] == 0 and written[split]["colour"] == "green"
    assert written[bake.entry.key]["status"] == "aborted"


def test_the_last_passing_step_flips_the_alias_with_the_splits_end(monkeypatch):
    alias, split = naming.alias_key("production", "vizconfig"), naming.split_key("production", "vizconfig")
    bake, fake = rolling_bake(monkeypatch, {alias: ("blue", 3), split: ('{"percent": 50}', 5)}, "pass")
    bake.entry = watchdog.Entry(bake.entry.key, rollout.started(bake.record, NOW, 1), 7)
    assert watchdog.roll_out(bake, 1.0, NOW + datetime.timedelta(seconds=31)) is True
    [written] = fake.transactions
    assert written[alias] == "green" and written[split]["percent"] == 0
    assert written[bake.entry.key]["status"] == "baked" and written[bake.entry.key]["rolledOutAt"]


class Beats:
    """Stands in for the heartbeat's sleep and its calls to the agent: ends the loop after `n`."""

    def __init__(self, n: int):
        self.n, self.calls = n, []

    def sleep(self, _seconds):
        if len(self.calls) >= self.n:
            raise StopIteration

    def call(self, method, url, timeout=None, headers=None, **kwargs):
        self.calls.append((method, url.split("8500", 1)[1]))
        return Response(200, {}, None)


def test_the_heartbeat_passes_the_progress_check_while_the_loop_keeps_its_deadline(monkeypatch):
    beats = Beats(3)
    monkeypatch.setattr(watchdog.time, "sleep", beats.sleep)
    monkeypatch.setattr(watchdog.api.requests, "request", beats.call)
    monkeypatch.setattr(watchdog, "AGENT", SimpleNamespace(address="http://agent:8500", token="t"))
    monkeypatch.setattr(watchdog, "IDENT", "w1")
    with watchdog.LIVENESS.step(300):     # a blocking query may take its whole wait
        with pytest.raises(StopIteration):
            watchdog.heartbeat()
    assert beats.calls == [("PUT", "/v1/agent/check/pass/w1-progress")] * 3


def test_a_loop_stuck_past_its_steps_timeout_ends_the_process(monkeypatch):
    beats = Beats(3)
    monkeypatch.setattr(watchdog.time, "sleep", beats.sleep)
    monkeypatch.setattr(watchdog.api.requests, "request", beats.call)
    monkeypatch.setattr(watchdog, "AGENT", SimpleNamespace(address="http://agent:8500", token="t"))
    monkeypatch.setattr(watchdog.os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    with watchdog.LIVENESS.step(2):
        pass
    monkeypatch.setattr(watchdog.LIVENESS, "deadline", watchdog.time.monotonic() - 1)
    with pytest.raises(SystemExit) as ended:
        watchdog.heartbeat()
    assert ended.value.code == 70 and beats.calls == []


def test_a_breach_whose_roll_back_must_be_tried_again_is_not_judged_again(monkeypatch):
    # A roll-back that lost a check-and-set is tried on the next tick; judging meanwhile could
    # record the bake as judged by probes while its reason is the real traffic's.
    bake = watchdog.Bake(watchdog.Entry("k", {"status": "baking", "colour": "blue"}, 7),
                         "production", "vizconfig")
    bake.breach, bake.judged = "real traffic on blue: success rate 80% below 99%", "traffic"
    monkeypatch.setattr(watchdog, "judge_traffic", lambda *_: pytest.fail("judged again"))
    monkeypatch.setattr(watchdog, "probe", lambda *_: pytest.fail("probed again"))
    monkeypatch.setattr(watchdog, "roll_back", lambda again, _breach, _wall: again.judged == "traffic")
    assert watchdog.tick(bake, 1.0, NOW) is True
