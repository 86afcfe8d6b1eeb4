"""Htpasswd: the registry's `user:bcrypt-hash` line, hashed with a random salt once and kept in
state (a secret), so the registry's file (and its container) changes only when the user or the
password does."""

from __future__ import annotations

import uuid
from typing import Any

import bcrypt
import pulumi
from pulumi import dynamic

from bluegreen.components.naming import HTPASSWD_TYPE

# The registry checks the hash on every request: a low cost keeps pushes fast, and a generated
# password (32 random bytes) needs no stretching.
BCRYPT_COST = 6


def htpasswd_entry(username: str, password: str, cost: int = BCRYPT_COST) -> str:
    """`user:bcrypt-hash` with a fresh random salt: no two entries alike, even for one password."""
    if ":" in username or not username:
        raise ValueError("a registry user name must be non-empty and without ':'")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    return f"{username}:{hashed}\n"


def entry_matches(entry: str, username: str, password: str) -> bool:
    """Whether `entry` is the htpasswd line of this user and password."""
    user, _, hashed = (entry or "").rstrip("\n").partition(":")
    try:
        return user == username and bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:  # not a bcrypt hash
        return False


class _HtpasswdProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(
            id_=f"htpasswd-{uuid.uuid4().hex[:12]}",
            outs={"username": props["username"],
                  "entry": htpasswd_entry(props["username"], props["password"])})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # The old entry proves the password without keeping it: only a new user or password
        # makes a new hash (and salt).
        changed = not entry_matches(olds.get("entry", ""), news["username"], news["password"])
        return dynamic.DiffResult(changes=changed, replaces=["password"] if changed else [])


class Htpasswd(dynamic.Resource, module=HTPASSWD_TYPE[0], name=HTPASSWD_TYPE[1]):
    """`entry`: the htpasswd line of `username` and `password` (a secret)."""

    entry: pulumi.Output[str]

    def __init__(self, name: str, *, username: pulumi.Input[str], password: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(_HtpasswdProvider(), name,
                         {"username": username, "password": password, "entry": None},
                         pulumi.ResourceOptions.merge(
                             opts, pulumi.ResourceOptions(additional_secret_outputs=["entry"])))
