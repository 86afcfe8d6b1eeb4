"""The registrator (images/consul/registrator.py) re-registers only containers the platform made:
an image's own `bluegreen.*` labels (a Dockerfile LABEL) never move another instance's
registration, whichever container runs the image (an isolation probe, a hand-run container)."""

from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from bluegreen.components.naming import docker_name, instance_id, platform_instance
from consul_image import load_script

VICTIM = instance_id("production", "vizconfig", "blue", "local", 0)
REGISTERED_PORT, NEW_PORT = 30000, 40000

registrator = load_script("registrator.py", "host_registrator")


def container(name: str, labels: dict) -> dict:
    return {"Name": "/" + name, "State": {"Running": True}, "Config": {"Labels": labels},
            "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1",
                                                        "HostPort": str(NEW_PORT)}]}}}


def registered_ports(monkeypatch, running: dict) -> list[int]:
    """The ports sync() registers VICTIM at, when `running` starts."""
    puts: list[int] = []
    current = {"ID": VICTIM, "Service": "vizconfig", "Port": REGISTERED_PORT,
               "Meta": {"environment": "production", "colour": "blue"}}
    monkeypatch.setattr(registrator, "inspect", lambda container_id: running)
    monkeypatch.setattr(registrator, "registered", lambda instance: current if instance == VICTIM else None)
    monkeypatch.setattr(registrator, "register", lambda payload: puts.append(payload["Port"]))
    registrator.sync("abc")
    return puts


PLATFORM_LABELS = {"bluegreen.role": "service", "bluegreen.instance": VICTIM,
                   "bluegreen.health.path": "/health"}


def test_a_container_the_platform_made_is_registered_at_its_new_port(monkeypatch):
    assert registered_ports(monkeypatch, container(docker_name(VICTIM), PLATFORM_LABELS)) == [NEW_PORT]


def test_an_isolation_probe_of_an_image_labelled_as_another_instance_moves_nothing(monkeypatch):
    # The image says `LABEL bluegreen.instance=<VICTIM> bluegreen.role=service`; the probe's
    # --label bluegreen.role=probe overrides the role, and its name is the probe's own.
    probe = container(docker_name("probe", "vizother", "0a1b2c3d", "vizother"),
                      {"bluegreen.role": "probe", "bluegreen.instance": VICTIM})
    assert registered_ports(monkeypatch, probe) == []


def test_a_hand_run_container_with_the_image_labels_moves_nothing(monkeypatch):
    assert registered_ports(monkeypatch, container("miner", PLATFORM_LABELS)) == []


def test_a_platform_container_of_another_role_moves_nothing(monkeypatch):
    labels = {**PLATFORM_LABELS, "bluegreen.role": "acceptance"}
    assert registered_ports(monkeypatch, container(docker_name(VICTIM), labels)) == []


class Engine:
    """The Docker SDK's client as the registrator uses it: containers running at the start, then
    a stream of start events; `closed` once the registrator is done with the stream."""

    def __init__(self, running: list[str], started: list[str]):
        self.running, self.started, self.asked, self.closed = running, started, [], False
        self.containers = SimpleNamespace(list=self.list)

    def list(self, filters):
        self.asked.append(("list", filters))
        return [SimpleNamespace(id=container_id) for container_id in self.running]

    def events(self, decode, filters):
        self.asked.append(("events", filters))
        engine = self

        class Stream:
            def __iter__(self):
                return iter([{"id": container_id} for container_id in engine.started])

            def close(self):
                engine.closed = True
        return Stream()


def test_the_watch_opens_the_events_first_catches_up_then_follows_them(monkeypatch):
    engine, synced = Engine(["a", "b"], ["c", "bad", "d"]), []

    def sync(container_id):
        if container_id == "bad":
            raise OSError("gone")
        synced.append(container_id)
    monkeypatch.setattr(registrator.Host, "client", engine)
    monkeypatch.setattr(registrator, "sync", sync)
    with pytest.raises(ConnectionError, match="closed the event stream"):
        registrator.watch()
    assert synced == ["a", "b", "c", "d"] and engine.closed
    assert [what for what, _ in engine.asked] == ["events", "list"]


@given(name=st.text(max_size=40), instance=st.text(min_size=1, max_size=40))
def test_only_the_name_the_platform_gives_an_instance_counts(name, instance):
    labels = {"bluegreen.role": "service", "bluegreen.instance": instance}
    expected = instance if name.lstrip("/") == docker_name(instance) else None
    assert platform_instance(name, labels) == expected
    assert platform_instance("/" + docker_name(instance), labels) == instance
