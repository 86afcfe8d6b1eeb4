"""Blue/green continuous delivery as Pulumi programs on Docker hosts, Consul and nginx.

The package's import path: `bluegreen.components` (the Pulumi components and their pure model),
`bluegreen.delivery` (the commands: pipeline, rollback, promote, split, ...) and
`bluegreen.policies` (the policy pack). In the repository these are the folders `components/`,
`delivery/` and `policies/`, linked here; a wheel holds them under `bluegreen/`.
"""
