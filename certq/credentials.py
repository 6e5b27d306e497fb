"""Operator-declared model credentials (`MODEL_CREDENTIALS`) and the hosts each may be sent to.

A model's `apiKeyEnv` may only name a variable declared here, and a worker sends that variable's value
only to a host (and port, where given) listed for it. Anything else is a configuration error: no other
environment variable of a worker (its database password, its tokens) can be made into a bearer token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class HostScope:
    """`api.example.com`, `*.example.com` (any subdomain), `127.0.0.1:8080` or `[::1]:8080`."""

    host: str
    port: int | None = None

    @property
    def is_suffix(self) -> bool:
        return self.host.startswith("*.")

    def matches(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        if self.port is not None and port != self.port:
            return False
        if self.is_suffix:
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True)
class CredentialPolicy:
    """Which variables models may name and where each may go; empty: no model may name a key."""

    scopes: dict[str, tuple[HostScope, ...]]

    @property
    def names(self) -> list[str]:
        return sorted(self.scopes)

    def declares(self, name: str) -> bool:
        return name in self.scopes

    def allows(self, name: str, url: str) -> bool:
        """True when the credential `name` may be sent to `url` (its host and effective port)."""
        target = url_target(url)
        if target is None:
            return False
        return any(scope.matches(*target) for scope in self.scopes.get(name, ()))

    def refusal(self, name: str, url: str) -> str | None:
        """Why `name` may not be sent to `url` (names the variable and the host, never a value), or None."""
        if not self.declares(name):
            declared = ", ".join(self.names) or "none"
            return f"{name} is not a credential declared in MODEL_CREDENTIALS (declared: {declared})"
        if self.allows(name, url):
            return None
        target = url_target(url)
        where = "that URL" if target is None else f"{target[0]}:{target[1]}"
        allowed = ", ".join(str(s) for s in self.scopes[name])
        return f"credential {name} may not be sent to {where} (MODEL_CREDENTIALS allows it for {allowed})"


def url_target(url: str) -> tuple[str, int] | None:
    """(host, port) a URL connects to, the port defaulted by scheme; None for what is not an http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.hostname.lower().rstrip("."), port if port is not None else _DEFAULT_PORTS[parts.scheme]


def parse_credentials(text: str) -> CredentialPolicy:
    """`"OPENAI_KEY@api.openai.com,LOCAL_KEY@127.0.0.1:8080"`; raises ValueError naming the bad entry."""
    scopes: dict[str, list[HostScope]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, at, where = entry.partition("@")
        if not at or not _ENV_NAME.match(name):
            raise ValueError(f"{entry!r} is not ENV_NAME@host[:port] (e.g. OPENAI_API_KEY@api.openai.com)")
        scopes.setdefault(name, []).append(_parse_scope(entry, where))
    return CredentialPolicy({name: tuple(found) for name, found in scopes.items()})


def _parse_scope(entry: str, where: str) -> HostScope:
    try:
        parts = urlsplit(f"//{where}")
        port = parts.port
    except ValueError:
        raise ValueError(f"{entry!r}: the port must be a number between 1 and 65535") from None
    host = (parts.hostname or "").rstrip(".")
    if parts.username is not None or parts.path or parts.query or parts.fragment or not host:
        raise ValueError(f"{entry!r}: after @ comes a host with an optional :port, nothing else")
    if port == 0:
        raise ValueError(f"{entry!r}: the port must be a number between 1 and 65535")
    labels = host.removeprefix("*.").split(".")
    if ":" not in host and not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError(f"{entry!r}: {host!r} is not a host name (a suffix is written *.example.com)")
    if "*" in host.removeprefix("*."):
        raise ValueError(f"{entry!r}: a wildcard is only allowed as a leading *.")
    return HostScope(host, port)
