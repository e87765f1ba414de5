"""Who sent a request: the address the rate limit counts against.

`X-Forwarded-For` is written by whoever sends the request, so it is believed only when the
connection comes from a configured proxy (`MOVIEREC_TRUSTED_PROXIES`), and then only the
entries the trusted proxies appended: reading the header from the right, the first address
that is not itself a trusted proxy is the client (what nginx's `real_ip_recursive` and
werkzeug's `ProxyFix` do). A client that writes `X-Forwarded-For: fake` through nginx
arrives as `fake, <its real address>`: it is counted as its real address. Without trusted
proxies the header is ignored and the connection's address is the client.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from movierec.core.sections import comma_list

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[Network, ...]:
    """`10.0.0.1, 172.30.80.0/24` -> networks (a bare address is a network of one)."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in comma_list(spec))


class ClientIdentity:
    """Turns (connection address, X-Forwarded-For) into the client's address."""

    def __init__(self, trusted_proxies: str):
        self.networks = parse_networks(trusted_proxies)
        self.is_trusted = lru_cache(maxsize=4096)(self._is_trusted)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def client(self, remote_addr: str | None, forwarded_for: str | None) -> str:
        """The client's address: the connection's, unless a trusted proxy forwarded it."""
        hop = remote_addr or ""
        if not self.networks or not forwarded_for or not self.is_trusted(hop):
            return hop
        for entry in reversed(forwarded_for.split(",")):
            entry = entry.strip()
            if not _is_address(entry):
                return hop  # garbage a trusted proxy passed on: count it as that proxy
            if not self.is_trusted(entry):
                return entry
            hop = entry
        return hop


@lru_cache(maxsize=4096)
def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
