"""The provider transport: every client of a process reuses one verifying TLS context."""

from __future__ import annotations

import ssl

from certq.certification.transport import CheckedTransport, tls_context
from certq.egress import parse_egress


def test_checked_transports_share_one_verifying_tls_context() -> None:
    # Building a context loads the CA bundle (~20 ms of CPU); one per provider client was 40 % of a
    # worker's CPU per certification in bench/fleet.py.
    policy = parse_egress("", production=False)
    first, second = CheckedTransport(policy), CheckedTransport(policy)
    contexts = {id(transport._pool._ssl_context) for transport in (first, second)}
    assert contexts == {id(tls_context())}
    assert tls_context().verify_mode is ssl.CERT_REQUIRED and tls_context().check_hostname
