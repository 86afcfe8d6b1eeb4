"""The audit trail's records, retention and listing, the deploy lock's holder messages, and the
durations both take: pure functions, no Consul."""

from __future__ import annotations

import datetime
import json

import pytest

from bluegreen.components.consul import rules
from bluegreen.components.model.audit import (
    Operator, actor_name, audit_key, audit_lines, audit_record, expired, since
)
from bluegreen.components.model.config import AUDIT_RETENTION_S, parse_stack_config
from bluegreen.components.model.lock import ago, held_message, holder_record, parse_holder, status_line
from bluegreen.components.model.validation import LONG_UNITS, ConfigError, Fields, parse_duration
from bluegreen.components.naming import audit_prefix, audit_stamp, audit_stamp_time, lock_key

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=datetime.timezone.utc)
WHO = Operator("ana@ci", "./bg rollback vizconfig --stack production")


def record(event="flip", **fields):
    return audit_record(event=event, environment="production", service="vizconfig", operator=WHO,
                        now=NOW, **fields)


def test_a_record_names_who_what_when_and_the_move():
    flip = record(before="green", after="blue", version="1.4.2", reason="rollback to 1.4.2")
    assert flip == {"event": "flip", "at": "2024-05-01T12:00:00Z", "actor": "ana@ci",
                    "command": "./bg rollback vizconfig --stack production",
                    "environment": "production", "service": "vizconfig", "from": "green",
                    "to": "blue", "version": "1.4.2", "release": "1.4.2",
                    "reason": "rollback to 1.4.2"}


def test_an_unknown_event_is_refused():
    with pytest.raises(ValueError, match="audit event must be one of"):
        record("deploy")


def test_keys_sort_by_time_under_the_services_prefix():
    key = audit_key(record(), NOW, "ab12cd")
    assert key == "bluegreen/audit/production/vizconfig/20240501T120000.250000Z-ab12cd"
    assert key.startswith(audit_prefix("production", "vizconfig"))
    later = audit_key(record(), NOW + datetime.timedelta(microseconds=1), "000000")
    assert sorted([later, key]) == [key, later]
    assert audit_stamp_time(key.rsplit("/", 1)[1]) == NOW
    assert audit_stamp_time("not-a-stamp") is None


def test_retention_lets_only_older_records_go():
    keys = [audit_prefix("production", "vizconfig") + audit_stamp(NOW - datetime.timedelta(days=d), "x")
            for d in (0, 29, 31, 400)]
    assert expired(keys + ["bluegreen/audit/production/vizconfig/junk"], NOW, AUDIT_RETENTION_S) == keys[2:]
    assert expired(keys, NOW, 400 * 86400 + 1) == []


def test_since_filters_and_orders_by_time_and_keeps_unreadable_records_visible():
    def at(hours):
        return f"{audit_prefix('production', 'a')}{audit_stamp(NOW - datetime.timedelta(hours=hours), 'x')}"
    entries = {at(1): json.dumps(record(reason="one")), at(30): json.dumps(record(reason="old")),
               at(2): "{broken"}
    assert [r["reason"] for r in since(entries, NOW, 86400)][0].startswith("unreadable record at")
    assert [r["reason"] for r in since(entries, NOW, 86400)][1] == "one"
    assert len(since(entries, NOW, None)) == 3


def test_the_listing_is_a_table_one_line_per_event():
    lines = audit_lines([record(before="green", after="blue", version="1.4.2"),
                         record("refused", reason="the deploy lock is held")])
    assert lines[0].split() == ["TIME", "(UTC)", "SERVICE", "EVENT", "FROM", "->", "TO", "VERSION",
                                "ACTOR", "COMMAND", "/", "REASON"]
    assert lines[1].split()[:7] == ["2024-05-01T12:00:00Z", "vizconfig", "flip", "green", "->",
                                    "blue", "1.4.2"]
    assert lines[2].endswith("rollback vizconfig --stack production: the deploy lock is held")
    assert lines[1].index("ana@ci") == lines[2].index("ana@ci")


def test_the_actor_is_the_named_one_or_user_at_host():
    assert actor_name({"BLUEGREEN_ACTOR": "ci job 42"}, "root", "h") == "ci job 42"
    assert actor_name({}, "root", "h") == "root@h"


def test_a_held_lock_names_its_holder_since_when_and_the_ways_out():
    holder = parse_holder(holder_record(WHO, NOW - datetime.timedelta(seconds=75), 4242, "ci"))
    message = held_message("vizconfig", "production", "production", holder, NOW)
    assert message.startswith("the deploy lock of vizconfig in production is held by ana@ci "
                              "(./bg rollback vizconfig --stack production) since "
                              "2024-05-01T11:58:45Z (1m 15s ago, process 4242 on ci); nothing was changed")
    assert "--lock-wait 10m" in message and "./bg lock release vizconfig --stack production" in message
    assert "after waiting 30s" in held_message("v", "s", "e", holder, NOW, waited_s=30.2)


def test_an_unreadable_holder_is_said_so():
    assert parse_holder("{oops") == {} and parse_holder(None) == {}
    assert "a holder that recorded nothing readable" in held_message("v", "s", "e", {}, NOW)


def test_lock_status_lines():
    assert status_line("vizconfig", "production", None, NOW) == "vizconfig in production: free"
    holder = parse_holder(holder_record(WHO, NOW, 7, "ci"))
    assert status_line("vizconfig", "production", holder, NOW).startswith(
        "vizconfig in production: held by ana@ci (./bg rollback")


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.9, "59s"), (61, "1m 01s"), (7500, "2h 05m")])
def test_ago(seconds, text):
    assert ago(seconds) == text


@pytest.mark.parametrize("text, seconds", [("500ms", 0.5), ("2s", 2), ("1m", 60), ("2h", 7200),
                                           ("30d", 2592000), ("1.5h", 5400)])
def test_long_durations(text, seconds):
    assert parse_duration(text, LONG_UNITS) == seconds


def test_manifests_keep_their_short_units():
    assert parse_duration("1d") is None and parse_duration("2 s") is None
    with pytest.raises(ConfigError, match="'1d' is not a duration; write e.g. 500ms, 2s or 1m$"):
        Fields("service.yaml", "health", {"interval": "1d"}, ["interval"]).duration("interval", "2s")


def test_audit_retention_is_stack_config_with_a_30_day_default():
    base = {"hosts": {"local": {"docker": "unix:///x", "consul": "http://127.0.0.1:1", "address": "127.0.0.1"}}}
    assert parse_stack_config("s", base, "/").audit_retention_s == 30 * 86400
    assert parse_stack_config("s", {**base, "auditRetention": "12h"}, "/").audit_retention_s == 43200
    with pytest.raises(ConfigError, match=r"stacks/Pulumi.s.yaml: bluegreen.auditRetention: '5m' is "
                                          r"too short .* e.g. 30d"):
        parse_stack_config("s", {**base, "auditRetention": "5m"}, "/")
    with pytest.raises(ConfigError, match="'a month' is not a duration; write e.g. 500ms, 2s or 1m, 2h or 30d"):
        parse_stack_config("s", {**base, "auditRetention": "a month"}, "/")


def test_the_deployer_keeps_the_trail_and_holds_locks_with_sessions():
    text = rules.deployer_rules("production")
    assert 'key_prefix "bluegreen/audit/production/" { policy = "write" }' in text
    assert 'key_prefix "bluegreen/locks/production/" { policy = "write" }' in text
    assert 'session_prefix "" { policy = "write" }' in text
    assert lock_key("production", "vizconfig") == "bluegreen/locks/production/vizconfig"
    # The proxy reads the trail (the catalogue shows the last events), never writes it.
    proxy = rules.proxy_rules()
    assert 'key_prefix "bluegreen/audit" { policy = "list" }' in proxy and '"write"' not in proxy
    assert "locks/" not in rules.watchdog_rules()


def test_a_lock_held_by_a_dead_process_of_this_machine_is_abandoned():
    from bluegreen.components.model.lock import abandoned
    holder = {"host": "vm", "pid": 4242}
    assert abandoned(holder, "vm", alive=lambda pid: False)
    assert not abandoned(holder, "vm", alive=lambda pid: True)
    assert not abandoned(holder, "other-machine", alive=lambda pid: False), "never judged from afar"
    assert not abandoned({"host": "vm"}, "vm", alive=lambda pid: False)
