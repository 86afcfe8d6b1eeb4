"""Entry point of the bluegreen policy pack.

The Pulumi CLI runs this file (`python -m pulumi.policy <engine> <this folder>`, with this folder
on sys.path); PolicyPack starts the analyzer's gRPC server and never returns. The rules live in the
importable package `rules/`.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from rules import ALL_POLICIES, PACK_NAME, install_secret_markers

# Let no-plaintext-secrets tell Pulumi secrets from plain text (see rules/secret_markers.py).
install_secret_markers()

PolicyPack(
    name=PACK_NAME,
    policies=ALL_POLICIES,
    # Every policy sets its own level; this default only applies to a policy that would not.
    enforcement_level=EnforcementLevel.MANDATORY,
    description="Blue/green delivery guard rails for Docker hosts, Consul and nginx.",
)
