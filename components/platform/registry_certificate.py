"""RegistryCertificate: the registry's TLS certificate and the CA that signed it, made once by the
platform stack and kept in state (the key as a secret), so engines on other hosts pull over TLS
and trust only that CA. A site with its own CA supplies the certificate instead
(`bluegreen:platformSecrets` registryCertificate, registryKey, registryCa).

Made with `cryptography` (pyca): the pulumi-tls provider would be one more plugin to build."""

from __future__ import annotations

import datetime
import ipaddress
import uuid
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi import dynamic

from bluegreen.components.naming import REGISTRY_CERTIFICATE_TYPE

VALID_DAYS = 3650


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def subject_alternative_names(addresses: list[str]) -> list[x509.GeneralName]:
    """IP addresses as IP SANs, anything else as a DNS name."""
    names: list[x509.GeneralName] = []
    for address in addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    return names


def issue(addresses: list[str], now: datetime.datetime | None = None) -> dict[str, str]:
    """A CA and a server certificate for `addresses`, with the server's key, all PEM. The CA's key
    is dropped once it signed: it never signs anything else, so nothing else can pass as the
    registry."""
    if not addresses:
        raise ValueError("a registry certificate needs at least one address")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    until = now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"bluegreen registry CA {uuid.uuid4().hex[:8]}")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (x509.CertificateBuilder().subject_name(_name(addresses[0])).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(until)
                   .add_extension(x509.SubjectAlternativeName(subject_alternative_names(addresses)),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"ca": _pem(ca), "certificate": _pem(certificate), "key": key_pem}


class _RegistryCertificateProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        made = issue(list(props["addresses"]))
        return dynamic.CreateResult(id_=f"registry-certificate-{uuid.uuid4().hex[:12]}",
                                    outs={"addresses": props["addresses"], **made})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = list(olds.get("addresses") or []) != list(news.get("addresses") or [])
        return dynamic.DiffResult(changes=changed, replaces=["addresses"] if changed else [])


class RegistryCertificate(dynamic.Resource, module=REGISTRY_CERTIFICATE_TYPE[0],
                          name=REGISTRY_CERTIFICATE_TYPE[1]):
    """`certificate` and `key` (a secret) for the registry at `addresses`, and the `ca` hosts
    trust; the same on every run until the addresses change."""

    ca: pulumi.Output[str]
    certificate: pulumi.Output[str]
    key: pulumi.Output[str]

    def __init__(self, name: str, *, addresses: list[str], opts: pulumi.ResourceOptions | None = None):
        if not addresses:
            raise ValueError("a registry certificate needs at least one address")
        super().__init__(_RegistryCertificateProvider(), name,
                         {"addresses": list(addresses), "ca": None, "certificate": None, "key": None},
                         pulumi.ResourceOptions.merge(
                             opts, pulumi.ResourceOptions(additional_secret_outputs=["key"])))
