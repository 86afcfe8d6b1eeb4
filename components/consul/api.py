"""The few Consul HTTP API calls the platform makes (KV, agent registration, instance health).

Written against the documented HTTP API with `requests`; the pulumi-consul provider writes
services to the catalog directly (bypassing the agents, so nobody runs their checks), and its
plugin cannot be built here, so registrations and aliases go through these calls instead."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import requests

TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 3    # an agent on a host whose link is down must not stall a poll for long
ELECTION_WAIT_S = 30     # how long a call waits out a leader election (a Consul server lost)


class ConsulError(RuntimeError):
    pass


def _call(method: str, address: str, path: str, ok: tuple[int, ...] = (404,),
          **kwargs) -> requests.Response:
    url = f"{address.rstrip('/')}{path}"
    deadline = time.monotonic() + ELECTION_WAIT_S
    while True:
        try:
            response = requests.request(method, url, timeout=(CONNECT_TIMEOUT_S, TIMEOUT_S), **kwargs)
        except requests.RequestException as error:
            raise ConsulError(f"Consul at {address} is unreachable ({error}); is the agent running?") from None
        if not (is_leaderless(response.status_code, response.text) and time.monotonic() < deadline):
            break
        time.sleep(0.5)
    if response.status_code >= 400 and response.status_code not in ok:
        raise ConsulError(f"{method} {url} failed: {response.status_code} {response.text.strip()}")
    return response


def is_leaderless(status: int, text: str) -> bool:
    """Consul's answer while its servers elect a leader, or while a server still forwards to one
    that is gone ("rpc error ... connection refused"): worth waiting out, not an error."""
    text = text.lower()
    return status == 500 and ("leader" in text or "rpc error" in text)


def kv_put(address: str, key: str, value: str) -> None:
    response = _call("PUT", address, f"/v1/kv/{key}", data=value.encode())
    if response.text.strip() != "true":
        raise ConsulError(f"KV write of {key} was not accepted: {response.text.strip()}")


def kv_get(address: str, key: str) -> str | None:
    response = _call("GET", address, f"/v1/kv/{key}", params={"raw": "true"})
    return None if response.status_code == 404 else response.text


def kv_get_indexed(address: str, key: str) -> tuple[str | None, int]:
    """A key's value and ModifyIndex (0 when absent): what a check-and-set write compares."""
    response = _call("GET", address, f"/v1/kv/{key}")
    if response.status_code == 404:
        return None, 0
    entry = response.json()[0]
    return base64.b64decode(entry["Value"] or b"").decode(), entry["ModifyIndex"]


def kv_cas(address: str, key: str, value: str, index: int) -> bool:
    """Writes `value` only if the key is still at ModifyIndex `index` (0: only if absent)."""
    response = _call("PUT", address, f"/v1/kv/{key}", params={"cas": str(index)}, data=value.encode())
    return response.text.strip() == "true"


def kv_cas_many(address: str, writes: dict[str, tuple[str, int]],
                sets: dict[str, str | None] | None = None) -> bool:
    """One transaction: every key gets its value if each is still at its ModifyIndex, or none
    does. `writes` maps key -> (value, index); `sets` are written (None: deleted) with them."""
    operations = [{"KV": {"Verb": "cas", "Key": key, "Index": index,
                          "Value": base64.b64encode(value.encode()).decode()}}
                  for key, (value, index) in sorted(writes.items())]
    operations += [{"KV": {"Verb": "delete", "Key": key}} if value is None else
                   {"KV": {"Verb": "set", "Key": key, "Value": base64.b64encode(value.encode()).decode()}}
                   for key, value in sorted((sets or {}).items())]
    response = _call("PUT", address, "/v1/txn", ok=(409,), json=operations)
    return response.status_code == 200


def kv_tree(address: str, prefix: str) -> dict[str, str]:
    """Every key under `prefix` with its value, in one request."""
    response = _call("GET", address, f"/v1/kv/{prefix}", params={"recurse": "true"})
    if response.status_code == 404:
        return {}
    return {entry["Key"]: base64.b64decode(entry["Value"] or b"").decode()
            for entry in response.json()}


def kv_delete(address: str, key: str, recurse: bool = False) -> None:
    _call("DELETE", address, f"/v1/kv/{key}", params={"recurse": "true"} if recurse else None)


def kv_keys(address: str, prefix: str) -> list[str]:
    response = _call("GET", address, f"/v1/kv/{prefix}", params={"keys": "true"})
    return [] if response.status_code == 404 else response.json()


def agent_register(address: str, payload: dict) -> None:
    _call("PUT", address, "/v1/agent/service/register", json=whole_numbers(payload))


def whole_numbers(value):
    """Pulumi carries every number as a float; Consul's Go structs want ints where they are whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def agent_deregister(address: str, service_id: str) -> None:
    _call("PUT", address, f"/v1/agent/service/deregister/{service_id}")


@dataclass(frozen=True)
class CheckState:
    service_id: str
    node: str
    name: str
    status: str
    output: str
    target: str = ""   # address:port the instance is registered at now (agent answers only)


def agent_service_checks(address: str, service_id: str) -> list[CheckState] | None:
    """The checks of one service instance as its own agent sees them (None: not registered).

    The agent is the authority on its checks; the catalog lags behind it."""
    # 429 and 503 mean "warning" and "critical": answers, not failures.
    response = _call("GET", address, f"/v1/agent/health/service/id/{service_id}", ok=(404, 429, 503))
    if response.status_code == 404:
        return None
    body = response.json()
    service = body.get("Service") or {}
    target = f"{service.get('Address', '')}:{service.get('Port', '')}"
    return [CheckState(service_id, c.get("Node", ""), c["Name"], c["Status"], c.get("Output", ""),
                       target)
            for c in body.get("Checks") or []]


def catalog_passing(address: str, service: str) -> set[str]:
    """IDs of the service's instances that pass every check in the catalog, node checks included:
    what the proxy renders from. It lags an agent's own view while the servers elect a leader."""
    response = _call("GET", address, f"/v1/health/service/{service}", params={"passing": "true"})
    return {entry["Service"]["ID"] for entry in response.json() or []}
