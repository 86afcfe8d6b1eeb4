from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties
from pulumi_policy.proxy import UNKNOWN_NUMBER_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

from bluegreen.policies.rules import common, secret_markers
from bluegreen.policies.rules.common import (CONSUL_KEY, HEALTH_GATE, REGISTRATION, UNKNOWN, dynamic_kind,
                                   is_secret, is_unknown, labels_of, plain)
from policy_fakes import consul_key, gate, registration, resource


def test_plain_turns_the_sdk_proxy_into_dicts_with_unknown_markers():
    props = unknown_checking_proxy({
        "image": UNKNOWN_STRING_VALUE,
        "memory": 96,
        "ports": [{"internal": 8000, "external": UNKNOWN_NUMBER_VALUE}],
        "labels": [{"label": "bluegreen.role", "value": "service"}],
    })
    result = plain(props)
    assert result == {"image": UNKNOWN, "memory": 96,
                      "ports": [{"internal": 8000, "external": UNKNOWN}],
                      "labels": [{"label": "bluegreen.role", "value": "service"}]}
    assert type(result) is dict and type(result["ports"]) is list


def test_unknown_marker():
    assert is_unknown(UNKNOWN) and is_unknown(UNKNOWN_STRING_VALUE)
    assert not is_unknown("blue") and not is_unknown(None)
    assert repr(UNKNOWN) == "<unknown>" and common._Unknown() is UNKNOWN


def test_labels_as_list_or_map():
    assert labels_of({"labels": [{"label": "a", "value": "1"}, {"bad": 1}]}) == {"a": "1"}
    assert labels_of({"labels": {"a": "1"}}) == {"a": "1"}
    assert labels_of({"labels": UNKNOWN}) == {} and labels_of({}) == {}


def test_dynamic_kinds_by_type_not_name():
    assert dynamic_kind(registration()) == REGISTRATION
    assert dynamic_kind(gate()) == HEALTH_GATE
    assert dynamic_kind(consul_key("x-alias-key", "bluegreen/aliases/p/x", "blue")) == CONSUL_KEY
    # a name that looks like ours is not enough: the type decides
    assert dynamic_kind(resource("pulumi-python:dynamic:Resource", "x-registration",
                                 {"address": "a", "payload": {}})) is None
    assert dynamic_kind(resource("docker:index/container:Container", "x-gate", {})) is None


def test_secret_markers_keep_strings_usable():
    marked = secret_markers.mark_secret({"a": ["x=1", 2], "b": "y"})
    assert marked == {"a": ["x=1", 2], "b": "y"}
    assert is_secret(marked["a"][0]) and is_secret(marked["b"]) and not is_secret(marked["a"][1])
    assert marked["b"] + "z" == "yz" and not is_secret("y")


def test_installed_markers_flag_secrets_in_deserialized_requests():
    assert secret_markers.install() is True
    assert secret_markers.install() is True  # idempotent
    secret = {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": "DB_PASSWORD=hunter2"}
    whole = {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": ["A=1", {"k": "v"}]}
    props = deserialize_properties({"envs": ["A=1", secret], "other": whole, "plain": "x"})
    assert props["envs"] == ["A=1", "DB_PASSWORD=hunter2"]
    assert is_secret(props["envs"][1]) and not is_secret(props["envs"][0])
    assert all(is_secret(v) for v in (props["other"][0], props["other"][1]["k"]))
    assert not is_secret(props["plain"])
    # The remediation path keeps the SDK's own secret proxies.
    proxied = deserialize_properties({"envs": [secret]}, True)
    assert proxied["envs"][0] == "DB_PASSWORD=hunter2"


def test_install_reports_changed_sdk_internals(monkeypatch):
    from pulumi_policy import deserialize
    monkeypatch.delattr(deserialize, "_deserialize_property")
    assert secret_markers.install() is False
