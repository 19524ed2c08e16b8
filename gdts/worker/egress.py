"""Where an http job's request may go. Not to this host (loopback: the stores, the manager, the
worker's probes), link-local neighbours (cloud metadata at 169.254.169.254) or any other address
that is not public, unless the worker's ``httpJobAllow`` lists it.

The check is made on each address as it is connected (a socket factory for aiohttp's
connector), after the name was resolved, so a name that resolves to a public address when asked
and to loopback a moment later cannot slip through."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import aiohttp
from aiohappyeyeballs import AddrInfoType

from gdts.config import parse_networks

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# What each kind of non-public address is called in a refusal, checked in this order.
_KINDS = (
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_unspecified", "unspecified"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


class EgressRefused(OSError):
    """A connection the policy does not allow; the message names the address and the rule."""


class EgressPolicy:
    def __init__(self, allow: Sequence[str] = ()) -> None:
        self._allow = parse_networks("httpJobAllow", allow)

    def refusal(self, address: str) -> str | None:
        """Why a connection to ``address`` is refused, or None if it is allowed."""
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if ip.is_global and not ip.is_multicast:
            return None
        if any(ip in network for network in self._allow):
            return None
        kind = next((name for test, name in _KINDS if getattr(ip, test)), "not public")
        return (
            f"{ip} is {kind}: http jobs may not connect to it unless the worker's "
            "httpJobAllow lists it"
        )

    def socket_for(self, addr_info: AddrInfoType) -> socket.socket:
        """aiohttp's socket factory: a socket for an allowed address, else EgressRefused."""
        family, type_, proto, _, sockaddr = addr_info
        reason = self.refusal(str(sockaddr[0]))
        if reason is not None:
            raise EgressRefused(reason)
        return socket.socket(family=family, type=type_, proto=proto)

    def session(self) -> aiohttp.ClientSession:
        """The one client session of a worker's http jobs, under this policy (call it on the
        event loop). No proxy from the environment: it would hide where requests go."""
        connector = aiohttp.TCPConnector(socket_factory=self.socket_for)
        return aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), trust_env=False
        )
