"""Upgrade path for stacks made when every dynamic resource had one shared type."""

from __future__ import annotations

import pulumi

from bluegreen.components.naming import LEGACY_DYNAMIC_TYPE


def with_legacy_type(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """`opts` plus an alias to the type every dynamic resource had before they got their own, so
    upgrading a stack updates its Consul resources in place instead of replacing them."""
    return pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=LEGACY_DYNAMIC_TYPE)]))
