"""The bluegreen CrossGuard policy pack.

This file only makes `policies.rules` importable from the repository root (the tests do that).
The pack's entry point is `__main__.py`, which the Pulumi CLI runs as `python -m pulumi.policy
<engine> policies`; it starts the analyzer server and never returns, so never import it.
"""
