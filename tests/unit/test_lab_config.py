"""The lab's stacks: a Consul quorum on hosts reached over SSH, each advertising its own address."""

import copy

import pytest

from bluegreen.components.model.config import parse_stack_config
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.platform.consul_cluster import agent_command, docker_socket_path
from test_config import ROOT, stack_values


def platform():
    return parse_stack_config("platform", stack_values("platform"), ROOT)


def test_platform_stack_runs_three_servers_and_two_proxies_on_the_lab():
    config = platform()
    assert config.platform.server_hosts == ("lab1", "lab2", "lab3")
    assert config.platform.client_hosts == ("local",)
    assert config.platform.proxy_host_names == ("lab1", "lab2")
    assert config.platform.client_proxy_address == "10.250.77.100"
    for name in config.platform.server_hosts:
        host = config.hosts[name]
        assert host.docker == f"ssh://root@{host.address}"
        assert host.consul.startswith(f"http://{host.address}:")
        assert host.docker_socket == f"/run/bluegreen-lab/{name}/docker.sock"


@pytest.mark.parametrize("stack", ["integration", "production"])
def test_environments_deploy_to_every_lab_host_and_build_on_one(stack):
    config = parse_stack_config(stack, stack_values(stack), ROOT)
    assert config.build_host == "lab1"
    assert config.services[0].hosts == ("lab1", "lab2", "lab3")
    assert {h.address for h in config.hosts.values()} == {"10.250.77.11", "10.250.77.12", "10.250.77.13"}


def test_every_server_expects_the_quorum_and_joins_the_others():
    config = platform()
    servers = tuple(config.hosts[h] for h in config.platform.server_hosts)
    for server in servers:
        command = agent_command(server, "dc1", servers)
        assert "-server" in command and "-bootstrap-expect=3" in command
        assert f"-bind={server.address}" in command and f"-advertise={server.address}" in command
        joins = sorted(c for c in command if c.startswith("-retry-join="))
        assert joins == sorted(f"-retry-join={s.address}:8301" for s in servers if s != server)
        assert "-hcl=leave_on_terminate = true" not in command
    client = agent_command(config.hosts["local"], "dc1", servers)
    assert "-server" not in client
    assert sorted(c for c in client if c.startswith("-retry-join=")) == \
        [f"-retry-join={s.address}:8301" for s in servers]


def test_a_single_server_keeps_its_command():
    config = parse_stack_config("local", stack_values("local"), ROOT)
    host = config.hosts["local"]
    command = agent_command(host, "dc1", (host,))
    assert "-bootstrap-expect=1" in command
    assert not any(c.startswith("-retry-join") or "raft_multiplier" in c for c in command)


def test_registrator_watches_the_socket_the_host_names():
    config = platform()
    assert docker_socket_path(config.hosts["lab2"]) == "/run/bluegreen-lab/lab2/docker.sock"
    assert docker_socket_path(config.hosts["local"]) == "/var/run/docker.sock"


@pytest.mark.parametrize("servers, advice", [
    (["lab1", "lab2"], "odd number"),
    (["lab1", "lab1", "lab2"], "once each"),
    (["lab1", "ghost", "lab2"], "configured hosts"),
])
def test_bad_server_lists_are_refused_naming_the_field(servers, advice):
    values = copy.deepcopy(stack_values("platform"))
    values["platform"]["servers"] = servers
    with pytest.raises(ConfigError) as raised:
        parse_stack_config("platform", values, ROOT)
    assert str(raised.value).startswith("stacks/Pulumi.platform.yaml: bluegreen.platform.servers: ")
    assert advice in str(raised.value)


def test_a_server_cannot_also_be_a_client():
    values = copy.deepcopy(stack_values("platform"))
    values["platform"]["agents"] = ["lab2"]
    with pytest.raises(ConfigError) as raised:
        parse_stack_config("platform", values, ROOT)
    assert "bluegreen.platform.agents" in str(raised.value) and "(local)" in str(raised.value)
