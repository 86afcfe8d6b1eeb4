"""The proxies' virtual address: what each host's keepalived (images/proxy/vrrp) is told."""

from __future__ import annotations

from bluegreen.components.naming import vrrp_router_id

TOP_PRIORITY = 200     # the first proxy host's; each next one 10 lower
PRIORITY_STEP = 10
MAX_PROXIES = 10       # priorities stay within VRRP's 1-254 for a backup


def vrrp_environment(stack: str, virtual: str, addresses: list[str], index: int,
                     port: int) -> list[str]:
    """The environment of the keepalived beside the proxy at `addresses[index]` (the proxy hosts'
    addresses in the order of proxy.hosts): the first host is preferred when all start together,
    each talks unicast to the others, and asks its own proxy's /healthz."""
    if not 2 <= len(addresses) <= MAX_PROXIES or len(set(addresses)) != len(addresses):
        raise ValueError(f"a virtual address needs 2 to {MAX_PROXIES} proxy hosts of distinct "
                         f"addresses, got {addresses}")
    if virtual in addresses:
        raise ValueError(f"the virtual address {virtual} is a proxy host's own address")
    own = addresses[index]
    return [f"VRRP_ADDRESS={own}", f"VRRP_VIRTUAL={virtual}",
            f"VRRP_PEERS={' '.join(a for a in addresses if a != own)}",
            f"VRRP_PRIORITY={TOP_PRIORITY - PRIORITY_STEP * index}",
            f"VRRP_ROUTER_ID={vrrp_router_id(stack)}",
            f"PROXY_HEALTH=http://{own}:{port}/healthz"]
