"""Service containers keep no capability and gain no privileges (colour_slot.SERVICE_HARDENING);
a colour deployed before that keeps running as it was (nothing replaces what may serve traffic)
until its next deploy."""

import json

from bluegreen.components.consul.records import ServiceRecords
from bluegreen.components.service import colour_slot
from test_wiring import STACK, Deployment, _released, config
from unit_harness import run_program


def hardened(container) -> bool:
    inputs = container.inputs
    drops = (inputs.get("capabilities") or {}).get("drops")
    options = inputs.get("securityOpts") or inputs.get("security_opts")
    return drops == ["ALL"] and options == ["no-new-privileges:true"]


def deploy(recorded_shape=None, alias=None) -> Deployment:
    records = {"vizconfig": ServiceRecords(
        releases={"1.0.0": _released("1.0.0", {})}, slots={"blue": "1.0.0"},
        shapes={"blue": recorded_shape} if recorded_shape else {}, live=alias)}
    return Deployment(run_program(config(live="blue"), stack=STACK, records=records))


def test_a_new_deploy_drops_every_capability_and_privilege_gain():
    containers = deploy().role("service")
    assert containers and all(hardened(c) for c in containers), \
        [json.dumps(c.inputs.get("capabilities")) for c in containers]


def test_a_live_colour_deployed_before_the_hardening_keeps_its_containers(monkeypatch):
    shapes = {}
    real_shape_of = colour_slot.shape_of

    def spy(args):
        shape = real_shape_of(args)
        if not args.hardened and args.service_token is not None:
            shapes[args.colour] = shape
        return shape

    monkeypatch.setattr(colour_slot, "shape_of", spy)
    deploy("a shape from some other deployment")        # learns blue's shape before the hardening
    by_colour = {c.label("bluegreen.colour"): c for c in deploy(shapes["blue"], alias="blue").role("service")}
    assert not hardened(by_colour["blue"]) and hardened(by_colour["green"])
    assert by_colour["blue"].inputs.get("capabilities") is None


def test_planned_shapes_agree_with_the_colours_containers():
    values = dict(stack=STACK, version="1.0.0", spec=_released("1.0.0", {}).spec, overrides={},
                  hosts=(), replicas=1, calls={}, proxy_port=None)
    before = colour_slot.shape_hash(token=True, hardened=False, **values)
    assert colour_slot.planned_shape(before, **values) == before
    assert colour_slot.planned_shape("other", **values) == \
        colour_slot.shape_hash(token=True, hardened=True, **values) != before
