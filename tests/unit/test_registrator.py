"""The registrator (images/consul/registrator.py) re-registers only containers the platform made:
an image's own `bluegreen.*` labels (a Dockerfile LABEL) never move another instance's
registration, whichever container runs the image (an isolation probe, a hand-run container)."""

from hypothesis import given, strategies as st

from components.naming import docker_name, instance_id, platform_instance
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

    def agent(method, path, body=None):
        if method == "PUT":
            puts.append(body["Port"])
            return None
        return current if path.endswith("/" + VICTIM) else None

    monkeypatch.setattr(registrator, "docker_get", lambda path: running)
    monkeypatch.setattr(registrator, "agent", agent)
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


@given(name=st.text(max_size=40), instance=st.text(min_size=1, max_size=40))
def test_only_the_name_the_platform_gives_an_instance_counts(name, instance):
    labels = {"bluegreen.role": "service", "bluegreen.instance": instance}
    expected = instance if name.lstrip("/") == docker_name(instance) else None
    assert platform_instance(name, labels) == expected
    assert platform_instance("/" + docker_name(instance), labels) == instance
