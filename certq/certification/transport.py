"""HTTP transport to model endpoints that connects only where the egress policy allows.

The host is resolved once, every address is checked, and the connection is made to a checked address, so
DNS rebinding (a name that answers a public address to a check and a private one to the connect) gets
nowhere. TLS still verifies the certificate against the URL's host name: httpcore sends the origin host as
SNI, not the address we dial.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from certq.egress import EgressPolicy, EgressRefused

RESOLVE_TIMEOUT_S = 5.0


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _resolve(host, port, timeout)
        refusals: list[str] = []
        allowed = []
        for address in addresses:
            refusal = self._policy.address_refusal(host, address)
            if refusal is None:
                allowed.append(address)
            else:
                refusals.append(refusal)
        if not allowed:
            raise EgressRefused(refusals[0] if refusals else f"{host} did not resolve to any address")
        last: Exception | None = None
        for address in allowed:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("model endpoints are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int, within_s: float | None) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    literal = host.strip("[]")
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(min(within_s or RESOLVE_TIMEOUT_S, RESOLVE_TIMEOUT_S)):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every provider client of the process: building one loads the CA bundle
    (about 20 ms of CPU), and two per certification were 40 % of a worker's CPU (docs/performance.md)."""
    return httpx.create_ssl_context()


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport with its connection pool dialling through the egress check."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(verify=tls_context(), retries=0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_CheckedBackend(policy),
        )


def transport_for(policy: EgressPolicy | None) -> httpx.AsyncBaseTransport | None:
    """The transport a provider's client uses: checked when there is a policy, httpx's default otherwise."""
    return None if policy is None else CheckedTransport(policy)
