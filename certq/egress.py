"""Where model endpoints may be: the egress allow-list (`MODEL_EGRESS_ALLOW`) and the address checks behind it.

A worker connects only to addresses this policy allows, checked on the address it actually connects to
(resolve, check, connect to that address), so a name that resolves to an internal address, or resolves
differently the second time, gets nowhere. The API runs the same checks on what it can know without DNS
(literal addresses in any spelling, metadata host names) to refuse a bad `baseUrl` at registration.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from certq.credentials import HostScope

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

KEYWORDS = ("public", "private", "loopback")
"""Address classes an allow-list may name: globally routable, private ranges (RFC 1918, ULA, CGNAT), loopback."""

DEVELOPMENT_DEFAULT = ("public", "private", "loopback")
PRODUCTION_DEFAULT = ("public",)

# Cloud metadata services: never allowed by a keyword, only by naming the exact address or host.
METADATA_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",
        "100.100.100.200/32",
    )
)
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)

_LOOPBACK_NAMES = re.compile(r"^(localhost|.+\.localhost)$")
_NUMERIC_V4 = re.compile(r"^[0-9a-fx.]+$")  # what inet_aton also reads: 2130706433, 0x7f.1, 0177.0.0.1, 127.1


class EgressRefused(Exception):
    """A connection the egress policy does not allow; the message names the host and address, nothing else."""


def literal_address(host: str) -> Address | None:
    """The address a URL host spells, in every form a resolver accepts (decimal, hex, octal, short, [v6])."""
    host = host.strip("[]").lower()
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if not _NUMERIC_V4.match(host) or not any(c.isdigit() for c in host):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return _unmapped(address)


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_class(address: Address) -> str:
    """`metadata`, `loopback`, `private`, `public`, or `reserved` (unspecified, multicast, documentation...)."""
    address = _unmapped(address)
    if any(address in network for network in METADATA_NETWORKS):
        return "metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "reserved"
    if address.is_global:
        return "public"
    if address.is_private or address in _CGNAT:
        return "private"
    return "reserved"


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class EgressPolicy:
    """Allowed address classes (keywords), host names and suffixes, and networks."""

    classes: frozenset[str]
    hosts: tuple[HostScope, ...] = ()
    networks: tuple[Network, ...] = ()

    def host_allowed(self, host: str) -> bool:
        """True when the name itself is listed: then whatever it resolves to is the operator's choice."""
        return any(scope.matches(host, 0) for scope in self.hosts)

    def address_refusal(self, host: str, address: Address) -> str | None:
        """Why connecting to `address` (resolved from `host`) is refused, or None when it is allowed."""
        address = _unmapped(address)
        if self.host_allowed(host) or any(address in network for network in self.networks):
            return None
        kind = address_class(address)
        if kind in self.classes:
            return None
        shown = host if host == str(address) else f"{host} ({address})"
        return f"{shown} is a {kind} address, not allowed by MODEL_EGRESS_ALLOW"

    def host_refusal(self, host: str) -> str | None:
        """What can be refused from the URL host alone, without DNS (the API's check); None otherwise."""
        host = host.lower().rstrip(".")
        if self.host_allowed(host):
            return None
        address = literal_address(host)
        if address is not None:
            return self.address_refusal(host, address)
        if host in METADATA_HOSTS:
            return f"{host} is a cloud metadata service, not allowed by MODEL_EGRESS_ALLOW"
        if _LOOPBACK_NAMES.match(host) and "loopback" not in self.classes:
            return f"{host} is a loopback name, not allowed by MODEL_EGRESS_ALLOW"
        if self.hosts and not self.networks and not self.classes:
            return f"{host} is not a host listed in MODEL_EGRESS_ALLOW"
        return None


def parse_egress(text: str, *, production: bool) -> EgressPolicy:
    """`"public,10.1.0.0/16,llm.internal,*.corp.example"`; empty: the default. ValueError names the entry."""
    entries = [part.strip() for part in text.split(",") if part.strip()]
    if not entries:
        entries = list(PRODUCTION_DEFAULT if production else DEVELOPMENT_DEFAULT)
    classes: set[str] = set()
    hosts: list[HostScope] = []
    networks: list[Network] = []
    for entry in entries:
        lowered = entry.lower()
        if lowered in KEYWORDS:
            classes.add(lowered)
            continue
        try:
            networks.append(ipaddress.ip_network(lowered.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        if "/" in lowered or ":" in lowered or not re.match(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$", lowered):
            raise ValueError(
                f"{entry!r} is not public, private, loopback, a network (10.0.0.0/8) or a host "
                f"(llm.internal, *.example.com)"
            )
        hosts.append(HostScope(lowered))
    return EgressPolicy(frozenset(classes), tuple(hosts), tuple(networks))
