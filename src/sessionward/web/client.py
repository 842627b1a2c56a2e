"""The client's address: the socket peer, unless the peer is a trusted proxy.

A proxy appends the address it received the request from to ``X-Forwarded-For``. Walking the
header from the right and skipping trusted proxies gives the first address no trusted party
vouches for: the client. From an untrusted peer the header is ignored, so it cannot be
spoofed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: object, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def client_ip(conn: HTTPConnection, proxies: Sequence[Network]) -> str | None:
    peer = _address(conn.client.host) if conn.client else None
    if peer is None or not _trusted(peer, proxies):
        return None if peer is None else peer.compressed
    hops = [h for part in conn.headers.getlist("x-forwarded-for") for h in part.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return peer.compressed  # a garbled chain: trust nothing beyond our proxy
        if not _trusted(address, proxies):
            return address.compressed
    return peer.compressed
