"""MODEL_CREDENTIALS: which variables models may name, and the only hosts each may be sent to."""

from __future__ import annotations

import pytest

from certq.credentials import parse_credentials, url_target
from certq.settings import SettingsError, load_settings

POLICY = parse_credentials(
    "OPENAI_KEY@api.openai.com, LOCAL_KEY@127.0.0.1:8080,LOCAL_KEY@[::1]:8080,GATEWAY_KEY@*.example.com"
)


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("OPENAI_KEY", "https://api.openai.com/v1"),
        ("OPENAI_KEY", "https://API.OpenAI.com./v1"),
        ("LOCAL_KEY", "http://127.0.0.1:8080/v1"),
        ("LOCAL_KEY", "http://[::1]:8080/v1"),
        ("GATEWAY_KEY", "https://llm.eu.example.com/v1"),
    ],
)
def test_a_credential_goes_to_the_hosts_declared_for_it(name: str, url: str) -> None:
    assert POLICY.allows(name, url) and POLICY.refusal(name, url) is None


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("OPENAI_KEY", "https://api.openai.com.evil.test/v1"),
        ("OPENAI_KEY", "https://evil.test/v1?api.openai.com"),
        ("OPENAI_KEY", "http://127.0.0.1:8080/v1"),
        ("LOCAL_KEY", "http://127.0.0.1:8081/v1"),  # the declared port only
        ("LOCAL_KEY", "http://127.0.0.2:8080/v1"),
        ("LOCAL_KEY", "http://2130706433:8080/v1"),  # 127.0.0.1 in decimal is not the declared host
        ("GATEWAY_KEY", "https://example.com/v1"),  # a suffix needs a subdomain
        ("GATEWAY_KEY", "https://evilexample.com/v1"),
        ("OPENAI_KEY", "ftp://api.openai.com/v1"),
        ("OPENAI_KEY", "https://api.openai.com:99999/v1"),
    ],
)
def test_a_credential_is_refused_for_any_other_host(name: str, url: str) -> None:
    assert not POLICY.allows(name, url)
    refusal = POLICY.refusal(name, url)
    assert refusal is not None and name in refusal and "MODEL_CREDENTIALS" in refusal


def test_an_undeclared_name_is_refused_naming_what_is_declared() -> None:
    refusal = POLICY.refusal("DATABASE_URL", "https://api.openai.com/v1")
    assert refusal is not None and "DATABASE_URL is not a credential declared" in refusal
    assert "GATEWAY_KEY, LOCAL_KEY, OPENAI_KEY" in refusal
    assert parse_credentials("").refusal("ANY", "https://x.test/v1") is not None


def test_the_default_port_follows_the_scheme() -> None:
    assert url_target("https://h.test/v1") == ("h.test", 443)
    assert url_target("http://h.test/v1") == ("h.test", 80)
    assert parse_credentials("K@h.test:443").allows("K", "https://h.test/v1")
    assert not parse_credentials("K@h.test:443").allows("K", "http://h.test/v1")


@pytest.mark.parametrize(
    "text",
    [
        "NOHOST",
        "K@",
        "1BAD@h.test",
        "K@user:pw@h.test",
        "K@h.test/v1",
        "K@h.test:0",
        "K@h.test:99999",
        "K@h.*.test",
        "K@*",
        "K@h_bad.test",
    ],
)
def test_a_malformed_entry_stops_start_up_naming_model_credentials(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_CREDENTIALS", text)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.variable == "MODEL_CREDENTIALS"
