import json

import pytest

from bluegreen.policies.rules.secret_markers import SecretStr
from bluegreen.policies.rules.secrets import check_plaintext_secrets, secret_name, value_problem
from policy_fakes import (UNKNOWN, consul_key, registration, registration_payload,
                          run_resource_policy, service_container)


@pytest.mark.parametrize("name", ["DB_PASSWORD", "password", "DB_PASSWD", "CLIENT_SECRET",
                                  "GITHUB_TOKEN", "API_KEY", "api-key", "ApiKey",
                                  "PRIVATE_KEY", "private-key"])
def test_secret_names(name):
    assert secret_name(name)


@pytest.mark.parametrize("name", ["DB_ADDRESS", "SERVICE_NAME", "PAGE_SIZE", "DB_PASSWORD_FILE",
                                  "TOKEN_URL", "KEY_PATH"])
def test_names_that_are_not_secrets(name):
    assert not secret_name(name)


@pytest.mark.parametrize("value, kind", [
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE...", "a private key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "a private key"),
    ("AKIAABCDEFGHIJKLMNOP", "an AWS access key ID"),
    ("redis://:hunter2@db:6379/0", "a URL with a password"),
    ("ghp_" + "a" * 36, "a GitHub token"),
])
def test_secret_looking_values_whatever_the_name(value, kind):
    assert value_problem("ANYTHING", value) == f"ANYTHING holds {kind} in plain text"


def test_secrets_unknowns_and_empty_values_are_fine():
    assert value_problem("DB_PASSWORD", SecretStr("hunter2")) is None
    assert value_problem("DB_PASSWORD", UNKNOWN) is None
    assert value_problem("DB_PASSWORD", "") is None
    assert value_problem("DB_ADDRESS", "db:6379") is None
    assert value_problem("DB_URL", "redis://db:6379") is None


def test_plain_password_in_container_env_fails_without_echoing_it():
    box = service_container(envs=["DB_ADDRESS=db:6379", "DB_PASSWORD=hunter2"])
    [message] = run_resource_policy("no-plaintext-secrets", box)
    assert "DB_PASSWORD" in message and "hunter2" not in message
    assert "pulumi config set --secret" in message


def test_secret_env_entries_pass():
    box = service_container(envs=["DB_ADDRESS=db:6379", SecretStr("DB_PASSWORD=hunter2"), UNKNOWN])
    assert check_plaintext_secrets(box, {}) == []
    assert run_resource_policy("no-plaintext-secrets", box) == []


def test_service_containers_as_deployed_pass():
    assert run_resource_policy("no-plaintext-secrets", service_container()) == []


def test_kv_entries():
    page_size = consul_key("c", "bluegreen/config/production/x/page_size", "50")
    assert check_plaintext_secrets(page_size, {}) == []
    assert check_plaintext_secrets(consul_key("c", "bluegreen/config/production/x/api_key",
                                              SecretStr("k")), {}) == []
    [message] = run_resource_policy("no-plaintext-secrets", consul_key(
        "c", "bluegreen/config/production/x/api_key", "k-123"))
    assert "bluegreen/config/production/x/api_key" in message and "k-123" not in message


def test_kv_keys_named_after_services_are_not_settings():
    key = consul_key("r", "bluegreen/routes/production/token-service", "token-service")
    assert check_plaintext_secrets(key, {}) == []
    alias = consul_key("a", "bluegreen/aliases/production/token-service", "blue")
    assert check_plaintext_secrets(alias, {}) == []


def test_json_documents_in_kv_are_searched():
    value = json.dumps({"title": "x", "db": {"password": "hunter2"}, "urls": ["https://a:b@c"]})
    messages = check_plaintext_secrets(consul_key("c", "bluegreen/catalogue/production/x", value), {})
    assert len(messages) == 2
    assert any("bluegreen/catalogue/production/x.db.password" in m for m in messages)
    assert any("a URL with a password" in m for m in messages)


def test_registration_metadata():
    assert check_plaintext_secrets(registration(), {}) == []
    payload = registration_payload()
    payload["Meta"]["token"] = "abc"
    [message] = run_resource_policy("no-plaintext-secrets", registration(payload=payload))
    assert "Meta.token" in message
