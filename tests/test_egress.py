"""The egress policy: every spelling of an internal address is seen for what it is."""

from __future__ import annotations

import ipaddress

import pytest

from certq.egress import address_class, literal_address, parse_egress
from certq.settings import Settings

INTERNAL_HOSTS = [
    "169.254.169.254",
    "[fd00:ec2::254]",
    "fd00:ec2::254",
    "metadata.google.internal",
    "100.100.100.200",
    "127.0.0.1",
    "2130706433",
    "0x7f000001",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "127.1",
    "0.0.0.0",
    "0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::]",
    "localhost",
    "api.localhost",
    "10.0.0.8",
    "172.16.3.4",
    "192.168.1.1",
    "100.64.0.1",
    "[fe80::1]",
    "224.0.0.1",
]


@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_production_refuses_every_form_of_an_internal_address(host: str) -> None:
    policy = parse_egress("", production=True)
    refusal = policy.host_refusal(host)
    assert refusal is not None and "MODEL_EGRESS_ALLOW" in refusal


@pytest.mark.parametrize(
    "host", ["api.openai.com", "8.8.8.8", "bedrock-runtime.us-east-1.amazonaws.com", "[2606:4700:4700::1111]"]
)
def test_production_allows_public_hosts_and_addresses(host: str) -> None:
    assert parse_egress("", production=True).host_refusal(host) is None


def test_development_allows_loopback_and_private_but_never_metadata() -> None:
    policy = parse_egress("", production=False)
    for host in ("127.0.0.1", "[::1]", "localhost", "10.1.2.3"):
        assert policy.host_refusal(host) is None, host
    for host in ("169.254.169.254", "[fd00:ec2::254]", "metadata.google.internal", "[fe80::1]"):
        assert policy.host_refusal(host) is not None, host


def test_an_explicit_network_or_host_allows_exactly_that() -> None:
    policy = parse_egress("public,127.0.0.2/32,llm.internal,*.corp.example", production=True)
    assert policy.host_refusal("127.0.0.2") is None
    assert policy.host_refusal("127.0.0.1") is not None
    assert policy.host_refusal("llm.internal") is None and policy.host_refusal("a.corp.example") is None
    assert policy.address_refusal("llm.internal", ipaddress.ip_address("10.0.0.5")) is None
    assert policy.address_refusal("evil.example", ipaddress.ip_address("10.0.0.5")) is not None
    metadata = parse_egress("169.254.169.254/32", production=True)
    assert metadata.host_refusal("169.254.169.254") is None and metadata.host_refusal("8.8.8.8") is not None


def test_a_host_only_allow_list_refuses_other_names() -> None:
    policy = parse_egress("api.openai.com", production=True)
    assert policy.host_refusal("api.openai.com") is None
    assert policy.host_refusal("example.com") is not None


def test_literal_addresses_are_read_as_a_resolver_reads_them() -> None:
    assert literal_address("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("0x7f000001") == ipaddress.ip_address("127.0.0.1")
    assert literal_address("[::ffff:10.0.0.1]") == ipaddress.ip_address("10.0.0.1")
    assert literal_address("example.com") is None and literal_address("deadbeef") is None
    assert address_class(ipaddress.ip_address("fd00:ec2::254")) == "metadata"


@pytest.mark.parametrize("value", ["10.0.0.0/33", "http://x", "local host", "*", "a*.example"])
def test_a_bad_allow_list_entry_stops_start_up_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="MODEL_EGRESS_ALLOW"):
        Settings.model_validate({"MODEL_EGRESS_ALLOW": value})
