"""PlatformCredentials: the platform's own secrets: the Consul management token, the gossip
encryption key and the registry's user and password (and a site's registry certificate). Each is
the site's (bluegreen:platformSecrets) or generated once; all are Pulumi secrets, so encrypted in
state and hidden in previews."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from bluegreen.components.model.config import PlatformSecrets
from bluegreen.components.platform.generated_secret import GeneratedSecret

DEFAULT_REGISTRY_USER = "bluegreen"


@dataclass(frozen=True)
class PlatformCredentialsArgs:
    supplied: PlatformSecrets = field(default_factory=PlatformSecrets)

    def __post_init__(self):
        if not isinstance(self.supplied, PlatformSecrets):
            raise ValueError("supplied must be a PlatformSecrets (see parse_platform_secrets)")


class PlatformCredentials(pulumi.ComponentResource):
    """Outputs (all secret): `consul_management_token`, `gossip_key`, `registry_username`,
    `registry_password`."""

    consul_management_token: pulumi.Output[str]
    gossip_key: pulumi.Output[str]
    registry_username: pulumi.Output[str]
    registry_password: pulumi.Output[str]

    def __init__(self, name: str, args: PlatformCredentialsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:PlatformCredentials", name, None, opts)
        supplied = args.supplied

        def chosen(value: str | None, label: str, kind: str) -> pulumi.Output[str]:
            if value is not None:
                return pulumi.Output.secret(value)
            return GeneratedSecret(f"{name}-{label}", kind=kind,
                                   opts=pulumi.ResourceOptions(parent=self)).value

        self.consul_management_token = chosen(supplied.consul_management_token,
                                              "consul-management", "uuid")
        self.gossip_key = chosen(supplied.consul_gossip_key, "consul-gossip", "gossip-key")
        self.registry_password = chosen(supplied.registry_password, "registry-password", "password")
        self.registry_username = pulumi.Output.secret(supplied.registry_username or DEFAULT_REGISTRY_USER)
        # The site's registry certificate (certificate, key, CA), if it supplied one; else the
        # platform makes its own where the registry needs TLS (see Platform).
        certificate, key, ca = supplied.registry_certificate, supplied.registry_key, supplied.registry_ca
        self.registry_tls: tuple[str, pulumi.Output[str], str] | None = None
        if certificate is not None and key is not None and ca is not None:   # all or none are set
            self.registry_tls = (certificate, pulumi.Output.secret(key), ca)
        self.register_outputs({"consul_management_token": self.consul_management_token,
                               "gossip_key": self.gossip_key,
                               "registry_username": self.registry_username,
                               "registry_password": self.registry_password})
