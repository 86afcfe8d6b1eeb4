"""The registry over TLS when other hosts pull from it: the certificate the platform makes, the
registry's settings, and the CA put where each platform host's engine looks for it."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bluegreen.components.model.config import parse_platform_secrets
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import DOCKER_CERTS_DIR, REGISTRY_CA_DIR, registry_ca_file, registry_trust_dir
from bluegreen.components.platform.docker_host import needs_tls, registry_url
from bluegreen.components.platform.registry import TLS_CERTIFICATE_FILE, TLS_KEY_FILE
from bluegreen.components.platform.registry_certificate import issue
from bluegreen.components.platform.registry_trust import CA_MOUNT, MOUNT, UPLOADED, install_script
from test_config import stack_values
from unit_harness import (CONTAINER, REGISTRY_CERTIFICATE, fake_secret, is_secret, plain,
                          run_program)


def test_the_certificate_chains_to_its_ca_and_names_the_registry_address():
    made = issue(["10.250.77.1", "registry.example"])
    ca = x509.load_pem_x509_certificate(made["ca"].encode())
    certificate = x509.load_pem_x509_certificate(made["certificate"].encode())
    key = serialization.load_pem_private_key(made["key"].encode(), password=None)
    assert certificate.issuer == ca.subject and certificate.subject != ca.subject
    ca.public_key().verify(certificate.signature, certificate.tbs_certificate_bytes,
                           ec.ECDSA(certificate.signature_hash_algorithm))
    assert key.public_key().public_numbers() == certificate.public_key().public_numbers()
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.250.77.1")]
    assert names.get_values_for_type(x509.DNSName) == ["registry.example"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_the_install_script_writes_where_the_engine_and_the_deployer_look(tmp_path):
    import subprocess
    uploaded = tmp_path / "uploaded.crt"
    uploaded.write_text("the CA")
    (tmp_path / "cas").mkdir()
    script = install_script("10.250.77.1:19005").replace(f"{MOUNT}/", f"{tmp_path}/certs.d/") \
        .replace(f"{CA_MOUNT}/", f"{tmp_path}/cas/").replace(UPLOADED, str(uploaded))
    subprocess.run(["sh", "-c", script], check=True)
    written = tmp_path / registry_trust_dir("10.250.77.1:19005").replace(DOCKER_CERTS_DIR, "certs.d") / "ca.crt"
    assert written.read_text() == "the CA"
    flat = tmp_path / registry_ca_file("10.250.77.1:19005").replace(REGISTRY_CA_DIR, "cas")
    assert flat.read_text() == "the CA" and ":" not in flat.name


def test_the_provider_reads_digests_over_the_scheme_the_registry_serves():
    assert registry_url("127.0.0.1:15000") == "http://127.0.0.1:15000"
    assert registry_url("10.250.77.1:19005") == "https://10.250.77.1:19005"
    assert registry_url("registry.example:443") == "https://registry.example:443"


def test_each_issue_makes_a_new_ca():
    assert issue(["10.0.0.1"])["ca"] != issue(["10.0.0.1"])["ca"]
    with pytest.raises(ValueError):
        issue([])


@pytest.mark.parametrize("address, tls", [("127.0.0.1", False), ("127.8.0.3", False),
                                          ("localhost", False), ("::1", False),
                                          ("10.250.77.1", True), ("registry.example", True)])
def test_only_a_registry_beyond_loopback_serves_tls(address, tls):
    assert needs_tls(address) is tls


def platform_resources(stack: str = "platform"):
    return run_program(stack_values(stack), stack=stack)


def test_the_lab_platform_serves_the_registry_over_tls_and_every_host_trusts_its_ca():
    resources = platform_resources()
    certificate = next(r for r in resources if r.type == REGISTRY_CERTIFICATE)
    assert certificate.inputs["addresses"] == ["10.250.77.1"]
    registry = next(r for r in resources if r.type == CONTAINER and r.name.endswith("-registry-container"))
    assert f"REGISTRY_HTTP_TLS_CERTIFICATE={TLS_CERTIFICATE_FILE}" in registry.inputs["envs"]
    assert f"REGISTRY_HTTP_TLS_KEY={TLS_KEY_FILE}" in registry.inputs["envs"]
    uploads = {u["file"]: u for u in plain(registry.inputs["uploads"])}
    assert uploads[TLS_CERTIFICATE_FILE]["content"] == f"certificate-of-{certificate.name}"
    # The key arrives as a root-only file, never in the command or the environment.
    assert uploads[TLS_KEY_FILE]["content"] == fake_secret(certificate.name)
    assert uploads[TLS_KEY_FILE]["permissions"] == "0600" and is_secret(registry.inputs["uploads"])
    assert fake_secret(certificate.name) not in str(registry.inputs["envs"])
    assert "https://127.0.0.1:5000/v2/" in " ".join(registry.inputs["healthcheck"]["tests"])
    trust = [r for r in resources if r.type == CONTAINER and r.label("bluegreen.role") == "registry-trust"]
    # One per platform host (the Consul agents' hosts), on that host's engine.
    assert sorted(r.name.rsplit("-", 1)[1] for r in trust) == ["lab1", "lab2", "lab3", "local"]
    for container in trust:
        assert container.inputs["volumes"] == [{"hostPath": DOCKER_CERTS_DIR, "containerPath": MOUNT},
                                                {"hostPath": REGISTRY_CA_DIR, "containerPath": CA_MOUNT}]
        assert container.inputs["uploads"] == [{"file": UPLOADED, "content": f"ca-of-{certificate.name}"}]
        assert container.inputs["command"] == [install_script("10.250.77.1:19005")]
        assert container.inputs["mustRun"] is False
    for container in trust:     # each on its own host's engine
        assert container.provider_urn.endswith("-" + container.name.rsplit("-", 1)[1]), container.provider


def test_a_loopback_registry_stays_plain_http_with_nothing_to_trust():
    resources = platform_resources("local")
    assert not [r for r in resources if r.type == REGISTRY_CERTIFICATE]
    assert not [r for r in resources if r.type == CONTAINER and r.label("bluegreen.role") == "registry-trust"]
    registry = next(r for r in resources if r.type == CONTAINER and r.name.endswith("-registry-container"))
    assert not [e for e in registry.inputs.get("envs") or [] if e.startswith("REGISTRY_HTTP_TLS")]


SITE = issue(["10.250.77.1"])
SITE_SECRETS = {"registryCertificate": SITE["certificate"], "registryKey": SITE["key"],
                "registryCa": SITE["ca"]}


def test_a_site_certificate_is_used_instead_of_a_generated_one():
    values = stack_values("platform")
    values["platformSecrets"] = dict(SITE_SECRETS)
    resources = run_program(values, stack="platform")
    assert not [r for r in resources if r.type == REGISTRY_CERTIFICATE]
    registry = next(r for r in resources if r.type == CONTAINER and r.name.endswith("-registry-container"))
    uploads = {u["file"]: u["content"] for u in plain(registry.inputs["uploads"])}
    assert (uploads[TLS_CERTIFICATE_FILE], uploads[TLS_KEY_FILE]) == (SITE["certificate"], SITE["key"])
    trust = [r for r in resources if r.type == CONTAINER and r.label("bluegreen.role") == "registry-trust"]
    assert trust and all(plain(r.inputs["uploads"])[0]["content"] == SITE["ca"] for r in trust)


@pytest.mark.parametrize("change, field, advice", [
    (lambda s: s.pop("registryCa"), "registryCa", "set registryCertificate, registryKey and registryCa together"),
    (lambda s: s.update(registryKey=SITE["certificate"]), "registryKey", "PEM text (-----BEGIN ...PRIVATE KEY-----)"),
    (lambda s: s.update(registryCertificate="not a certificate"), "registryCertificate", "is not valid (value not shown)"),
])
def test_a_partial_or_malformed_site_certificate_is_refused_naming_the_field(change, field, advice):
    supplied = dict(SITE_SECRETS)
    change(supplied)
    with pytest.raises(ConfigError) as refused:
        parse_platform_secrets("platform", supplied)
    message = str(refused.value)
    assert f"bluegreen.platformSecrets.{field}" in message and advice in message
    assert "stacks/Pulumi.platform.yaml" in message
    assert SITE["key"].splitlines()[1] not in message     # never quotes a value


def test_the_trust_containers_pass_the_container_policies():
    from bluegreen.policies.rules import containers
    from bluegreen.policies.rules.common import CONTAINER as POLICY_CONTAINER
    trust = [r for r in platform_resources() if r.type == CONTAINER
             and r.label("bluegreen.role") == "registry-trust"]
    for container in trust:
        resource = {"type": POLICY_CONTAINER, "name": container.name, "props": container.inputs}
        for check in (containers.check_memory, containers.check_restart, containers.check_host_ports):
            assert check(resource, {}) == [], (check.__name__, container.name)


def test_bg_lets_go_programs_trust_the_registry_cas_the_platform_installs():
    import os
    from unit_harness import ROOT
    with open(os.path.join(ROOT, "bg"), encoding="utf-8") as handle:
        lines = [line for line in handle if line.startswith("export SSL_CERT_DIR=")]
    assert len(lines) == 1 and lines[0].rstrip().endswith(f":{REGISTRY_CA_DIR}")
