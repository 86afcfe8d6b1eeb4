"""The Consul HTTP API calls the platform makes (KV, transactions, sessions, agent registration and
checks, instance health, ACL policies and tokens): the one client of the Pulumi program, the
delivery commands and the platform's own containers (the consul image's registrator, watchdog and
delivery exporter, which find their agent with `LocalAgent.from_environment`).

Written against the documented HTTP API with `requests`; the pulumi-consul provider writes
services to the catalog directly (bypassing the agents, so nobody runs their checks), and its
plugin cannot be built here, so registrations and aliases go through these calls instead.
Every call carries a token (X-Consul-Token): the agents deny anything anonymous."""

from __future__ import annotations

import base64
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from bluegreen.components.model.wire import integral_numbers
from bluegreen.components.naming import read_token_file

TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 3    # an agent on a host whose link is down must not stall a poll for long
ELECTION_WAIT_S = 30     # how long a call waits out a leader election (a Consul server lost)
# Accessor IDs are derived from a token's name, so re-creating a token by name finds the old one.
ACCESSOR_NAMESPACE = uuid.UUID("6f0c4d1e-2b7a-5c39-9d84-0b1e6f5a7c21")


class ConsulError(RuntimeError):
    pass


def _call(method: str, address: str, path: str, token: str, ok: tuple[int, ...] = (404,),
          timeout_s: float = TIMEOUT_S, **kwargs) -> requests.Response:
    if not token:
        raise ConsulError(f"{method} {path}: no Consul token given; the agents deny anonymous calls "
                          "(a resource made before ACLs were on gets one at its next `pulumi up`)")
    url = f"{address.rstrip('/')}{path}"
    deadline = time.monotonic() + ELECTION_WAIT_S
    while True:
        try:
            response = requests.request(method, url, timeout=(CONNECT_TIMEOUT_S, timeout_s),
                                        headers={"X-Consul-Token": token}, **kwargs)
        except requests.RequestException as error:
            raise ConsulError(f"Consul at {address} is unreachable ({error}); is the agent running?") from None
        if not (is_leaderless(response.status_code, response.text) and time.monotonic() < deadline):
            break
        time.sleep(0.5)
    if response.status_code >= 400 and response.status_code not in ok:
        raise ConsulError(f"{method} {url} failed: {response.status_code} {response.text.strip()}")
    return response


def blocking_timeout(wait_s: float) -> float:
    """How long a blocking query of `wait_s` may take: Consul adds up to wait/16 of jitter."""
    return wait_s * 17 / 16 + TIMEOUT_S


def blocking(index: int, wait_s: float) -> dict[str, str] | None:
    """A blocking query's parameters: it answers once its data changes past `index`, or after
    `wait_s` (None: an ordinary read)."""
    return {"index": str(index), "wait": f"{max(1, round(wait_s))}s"} if index and wait_s > 0 else None


def is_leaderless(status: int, text: str) -> bool:
    """Consul's answer while its servers elect a leader, or while a server still forwards to one
    that is gone ("rpc error ... connection refused"): worth waiting out, not an error."""
    text = text.lower()
    return status == 500 and ("leader" in text or "rpc error" in text)


def kv_put(address: str, key: str, value: str, token: str) -> None:
    response = _call("PUT", address, f"/v1/kv/{key}", token, data=value.encode())
    if response.text.strip() != "true":
        raise ConsulError(f"KV write of {key} was not accepted: {response.text.strip()}")


def kv_get(address: str, key: str, token: str) -> str | None:
    response = _call("GET", address, f"/v1/kv/{key}", token, params={"raw": "true"})
    return None if response.status_code == 404 else response.text


def kv_get_indexed(address: str, key: str, token: str) -> tuple[str | None, int]:
    """A key's value and ModifyIndex (0 when absent): what a check-and-set write compares."""
    response = _call("GET", address, f"/v1/kv/{key}", token)
    if response.status_code == 404:
        return None, 0
    entry = response.json()[0]
    return base64.b64decode(entry["Value"] or b"").decode(), entry["ModifyIndex"]


def kv_cas(address: str, key: str, value: str, index: int, token: str) -> bool:
    """Writes `value` only if the key is still at ModifyIndex `index` (0: only if absent)."""
    response = _call("PUT", address, f"/v1/kv/{key}", token, params={"cas": str(index)},
                     data=value.encode())
    return response.text.strip() == "true"


def kv_cas_many(address: str, writes: dict[str, tuple[str, int]], token: str,
                sets: dict[str, str | None] | None = None,
                unchanged: dict[str, int] | None = None, held: dict[str, str] | None = None,
                timeout_s: float = TIMEOUT_S) -> bool:
    """One transaction: every key gets its value if each is still at its ModifyIndex, or none
    does. `writes` maps key -> (value, index); `sets` are written (None: deleted) with them;
    `unchanged` keys (key -> index) must still be at their index, and are not written; `held`
    keys (key -> session) must be held by that session (a leader's writes land only while it leads)."""
    operations: list[dict[str, Any]] = [{"KV": {"Verb": "check-session", "Key": key, "Session": session}}
                                        for key, session in sorted((held or {}).items())]
    operations += [{"KV": {"Verb": "check-index", "Key": key, "Index": index}}
                   for key, index in sorted((unchanged or {}).items())]
    operations += [{"KV": {"Verb": "cas", "Key": key, "Index": index,
                           "Value": base64.b64encode(value.encode()).decode()}}
                   for key, (value, index) in sorted(writes.items())]
    operations += [{"KV": {"Verb": "delete", "Key": key}} if value is None else
                   {"KV": {"Verb": "set", "Key": key, "Value": base64.b64encode(value.encode()).decode()}}
                   for key, value in sorted((sets or {}).items())]
    response = _call("PUT", address, "/v1/txn", token, ok=(409,), json=operations, timeout_s=timeout_s)
    return response.status_code == 200


def kv_tree(address: str, prefix: str, token: str) -> dict[str, str]:
    """Every key under `prefix` with its value, in one request."""
    return {key: entry.value for key, entry in kv_entries(address, prefix, token)[0].items()}


def kv_delete(address: str, key: str, token: str, recurse: bool = False) -> None:
    _call("DELETE", address, f"/v1/kv/{key}", token, params={"recurse": "true"} if recurse else None)


def kv_keys(address: str, prefix: str, token: str) -> list[str]:
    response = _call("GET", address, f"/v1/kv/{prefix}", token, params={"keys": "true"})
    return [] if response.status_code == 404 else response.json()


@dataclass(frozen=True)
class KVEntry:
    value: str
    index: int          # ModifyIndex
    session: str = ""   # the Consul session holding the key, if any


def _entry(item: dict[str, Any]) -> KVEntry:
    return KVEntry(base64.b64decode(item["Value"] or b"").decode(), item["ModifyIndex"],
                   item.get("Session", ""))


def _next_index(response: requests.Response) -> int:
    return int(response.headers.get("X-Consul-Index", "0") or 0)


def kv_entry(address: str, key: str, token: str, index: int = 0,
             wait_s: float = 0.0) -> tuple[KVEntry | None, int]:
    """A key with its holder, and the index to block on next. With `index`, a blocking query:
    it answers once the key changes past `index`, or after `wait_s`."""
    response = _call("GET", address, f"/v1/kv/{key}", token, params=blocking(index, wait_s),
                     timeout_s=blocking_timeout(wait_s))
    if response.status_code == 404:
        return None, _next_index(response)
    return _entry(response.json()[0]), _next_index(response)


def kv_entries(address: str, prefix: str, token: str, index: int = 0,
               wait_s: float = 0.0) -> tuple[dict[str, KVEntry], int]:
    """Every key under `prefix` with its entry, and the index to block on next; with `index`, a
    blocking query that answers once something under `prefix` changes, or after `wait_s`."""
    params = {"recurse": "true", **(blocking(index, wait_s) or {})}
    response = _call("GET", address, f"/v1/kv/{prefix}", token, params=params,
                     timeout_s=blocking_timeout(wait_s))
    if response.status_code == 404:
        return {}, _next_index(response)
    return {item["Key"]: _entry(item) for item in response.json()}, _next_index(response)


def kv_acquire(address: str, key: str, value: str, session: str, token: str) -> bool:
    """Writes `value` and takes the key for `session`, unless another session holds it."""
    response = _call("PUT", address, f"/v1/kv/{key}", token, params={"acquire": session},
                     data=value.encode())
    return response.text.strip() == "true"


def session_create(address: str, token: str, name: str, ttl_s: int, behavior: str = "delete") -> str:
    """A session on the agent's node that ends when it is not renewed within `ttl_s` (or the
    node fails); what it holds is then deleted (or released). Returns its ID."""
    # No lock delay: a successor waits out the TTL already, and every flip is a check-and-set.
    return session_create_from(address, token, {"Name": name, "TTL": f"{ttl_s}s",
                                                "Behavior": behavior, "LockDelay": "0s"})


def session_create_from(address: str, token: str, body: dict[str, Any]) -> str:
    """A session made from a whole body (its checks, behavior, lock delay); returns its ID."""
    return _call("PUT", address, "/v1/session/create", token, json=body).json()["ID"]


def session_exists(address: str, session: str, token: str) -> bool:
    """Whether Consul still knows the session (it ends with its checks, node or TTL)."""
    return bool(_call("GET", address, f"/v1/session/info/{session}", token).json())


def session_renew(address: str, session: str, token: str) -> bool:
    """Renews a session's TTL; False when the session is gone (expired or destroyed)."""
    return _call("PUT", address, f"/v1/session/renew/{session}", token).status_code == 200


def session_destroy(address: str, session: str, token: str) -> None:
    """Ends a session: the keys it holds are deleted or released as its behavior says."""
    _call("PUT", address, f"/v1/session/destroy/{session}", token)


def agent_register(address: str, payload: dict, token: str) -> None:
    # Pulumi carries every number as a float; Consul's Go structs want ints where they are whole.
    _call("PUT", address, "/v1/agent/service/register", token, json=integral_numbers(payload))


def agent_deregister(address: str, service_id: str, token: str) -> None:
    _call("PUT", address, f"/v1/agent/service/deregister/{service_id}", token)


def agent_service(address: str, service_id: str, token: str) -> dict[str, Any] | None:
    """One service instance as its agent registered it (None: not registered there)."""
    response = _call("GET", address, f"/v1/agent/service/{quote(service_id, safe='')}", token)
    return None if response.status_code == 404 else response.json()


def agent_check_pass(address: str, check_id: str, token: str, timeout_s: float = TIMEOUT_S) -> None:
    """Passes a TTL check for another TTL period."""
    _call("PUT", address, f"/v1/agent/check/pass/{quote(check_id, safe='')}", token,
          timeout_s=timeout_s)


@dataclass(frozen=True)
class CheckState:
    service_id: str
    node: str
    name: str
    status: str
    output: str
    target: str = ""   # address:port the instance is registered at now (agent answers only)


def agent_service_checks(address: str, service_id: str, token: str) -> list[CheckState] | None:
    """The checks of one service instance as its own agent sees them (None: not registered).

    The agent is the authority on its checks; the catalog lags behind it."""
    # 429 and 503 mean "warning" and "critical": answers, not failures.
    response = _call("GET", address, f"/v1/agent/health/service/id/{service_id}", token,
                     ok=(404, 429, 503))
    if response.status_code == 404:
        return None
    body = response.json()
    service = body.get("Service") or {}
    target = f"{service.get('Address', '')}:{service.get('Port', '')}"
    return [CheckState(service_id, c.get("Node", ""), c["Name"], c["Status"], c.get("Output", ""),
                       target)
            for c in body.get("Checks") or []]


def catalog_passing(address: str, service: str, token: str) -> set[str]:
    """IDs of the service's instances that pass every check in the catalog, node checks included:
    what the proxy renders from. It lags an agent's own view while the servers elect a leader."""
    return {entry["Service"]["ID"] for entry in health_service(address, service, token, passing=True)}


def health_service(address: str, service: str, token: str, passing: bool = False) -> list[dict[str, Any]]:
    """The service's instances in the catalog with their checks (Consul's health API entries);
    with `passing`, only those passing every check."""
    response = _call("GET", address, f"/v1/health/service/{quote(service, safe='')}",
                     token, params={"passing": "true"} if passing else None)
    return response.json() or []


@dataclass(frozen=True)
class LocalAgent:
    """The agent a platform container talks to, found as the Consul CLI finds it: its address in
    CONSUL_HTTP_ADDR, its token in the file CONSUL_HTTP_TOKEN_FILE names (read at every call: the
    platform uploads the file after the container starts, and replaces it with a new token)."""
    address: str
    token_file: str = ""

    @classmethod
    def from_environment(cls) -> LocalAgent:
        return cls(os.environ.get("CONSUL_HTTP_ADDR", "http://127.0.0.1:8500").rstrip("/"),
                   os.environ.get("CONSUL_HTTP_TOKEN_FILE", ""))

    @property
    def token(self) -> str:
        return read_token_file(self.token_file)


# -- ACL ------------------------------------------------------------------------------------------

def accessor_id(name: str) -> str:
    """The stable AccessorID of the token called `name`."""
    return str(uuid.uuid5(ACCESSOR_NAMESPACE, name))


def _missing(response: requests.Response) -> bool:
    # Consul answers a read of an unknown token or policy with 403 "ACL not found" or a 404.
    return response.status_code == 404 or (
        response.status_code == 403 and "not found" in response.text.lower())


def wait_for_acl(address: str, token: str, timeout_s: float = 60.0) -> None:
    """Waits until the agent resolves `token` (right after a server starts, its ACL system takes a
    moment to initialise); raises naming the last answer."""
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while True:
        try:
            response = _call("GET", address, "/v1/acl/token/self", token, ok=(403, 404, 500))
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text.strip()[:200]}"
        except ConsulError as error:
            last = str(error)
        if time.monotonic() > deadline:
            raise ConsulError(f"Consul at {address} did not accept the token within "
                              f"{timeout_s:.0f}s: {last}")
        time.sleep(0.5)


def acl_policy_upsert(address: str, token: str, name: str, rules: str, description: str) -> str:
    """Creates or updates the policy called `name`; returns its ID."""
    found = _call("GET", address, f"/v1/acl/policy/name/{name}", token, ok=(403, 404))
    body = {"Name": name, "Description": description, "Rules": rules}
    if found.status_code == 200:
        policy_id = found.json()["ID"]
        _call("PUT", address, f"/v1/acl/policy/{policy_id}", token, json=body)
        return policy_id
    if not _missing(found):
        raise ConsulError(f"reading ACL policy {name} failed: {found.status_code} {found.text.strip()}")
    return _call("PUT", address, "/v1/acl/policy", token, json=body).json()["ID"]


def acl_policy_delete(address: str, token: str, name: str) -> None:
    found = _call("GET", address, f"/v1/acl/policy/name/{name}", token, ok=(403, 404))
    if found.status_code == 200:
        _call("DELETE", address, f"/v1/acl/policy/{found.json()['ID']}", token)


def acl_token_upsert(address: str, token: str, name: str, secret_id: str, policy: str,
                     description: str) -> str:
    """Creates or updates the token called `name` (AccessorID from the name, SecretID given) with
    one policy; a token of that name with another SecretID is replaced. Returns the AccessorID."""
    accessor = accessor_id(name)
    found = _call("GET", address, f"/v1/acl/token/{accessor}", token, ok=(403, 404))
    body = {"AccessorID": accessor, "SecretID": secret_id, "Description": description,
            "Policies": [{"Name": policy}], "Local": False}
    if found.status_code == 200:
        if found.json().get("SecretID") == secret_id:
            _call("PUT", address, f"/v1/acl/token/{accessor}", token, json=body)
            return accessor
        _call("DELETE", address, f"/v1/acl/token/{accessor}", token)
    elif not _missing(found):
        raise ConsulError(f"reading ACL token {name} failed: {found.status_code} {found.text.strip()}")
    _call("PUT", address, "/v1/acl/token", token, json=body)
    return accessor


def acl_token_delete(address: str, token: str, name: str) -> None:
    _call("DELETE", address, f"/v1/acl/token/{accessor_id(name)}", token, ok=(403, 404))
