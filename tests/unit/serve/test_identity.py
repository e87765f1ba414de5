"""Client identity: X-Forwarded-For is believed only from trusted proxies, read from the right."""

from __future__ import annotations

import pytest

from movierec.core.errors import ConfigError
from movierec.core.settings import Settings
from movierec.serve.identity import ClientIdentity


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    who = ClientIdentity("")
    assert who.client("203.0.113.7", "1.2.3.4") == "203.0.113.7"
    assert who.client("203.0.113.7", None) == "203.0.113.7"


def test_a_client_cannot_choose_its_address_through_a_trusted_proxy() -> None:
    who = ClientIdentity("10.0.0.0/24")
    # nginx's $proxy_add_x_forwarded_for: what the client sent, then the address nginx saw
    assert who.client("10.0.0.5", "fake, 203.0.113.7") == "203.0.113.7"
    assert who.client("10.0.0.5", "203.0.113.7") == "203.0.113.7"
    assert who.client("10.0.0.5", "1.1.1.1, 2.2.2.2, 203.0.113.7") == "203.0.113.7"


def test_chains_of_trusted_proxies_are_walked_from_the_right() -> None:
    who = ClientIdentity("10.0.0.1, 10.0.0.2")
    assert who.client("10.0.0.2", "spoof, 198.51.100.9, 10.0.0.1") == "198.51.100.9"
    # everything trusted: the client is the farthest proxy
    assert who.client("10.0.0.2", "10.0.0.1") == "10.0.0.1"


def test_a_header_from_an_untrusted_peer_is_not_believed() -> None:
    who = ClientIdentity("10.0.0.1")
    assert who.client("203.0.113.7", "10.0.0.1, 1.2.3.4") == "203.0.113.7"


def test_garbage_passed_on_by_a_trusted_proxy_counts_as_that_proxy() -> None:
    who = ClientIdentity("10.0.0.1")
    assert who.client("10.0.0.1", "1.2.3.4, not-an-ip") == "10.0.0.1"
    assert who.client("10.0.0.1", "") == "10.0.0.1"


def test_ipv6_proxies_and_clients() -> None:
    who = ClientIdentity("::1, fd00::/8")
    assert who.client("::1", "2001:db8::5, fd00::3") == "2001:db8::5"


@pytest.mark.parametrize("bad", ["10.0.0.300", "proxy.local", "10.0.0.0/33"])
def test_a_bad_trusted_proxy_setting_names_the_value(bad: str) -> None:
    with pytest.raises(ConfigError, match="MOVIEREC_TRUSTED_PROXIES") as exc:
        Settings.from_env({"MOVIEREC_TRUSTED_PROXIES": f"10.0.0.1,{bad}"})
    assert bad in str(exc.value) and "\n" not in str(exc.value)


def test_a_rate_limit_storage_that_is_not_redis_is_refused() -> None:
    with pytest.raises(ConfigError, match="MOVIEREC_RATE_LIMIT_STORAGE='memcached://x'"):
        Settings.from_env({"MOVIEREC_RATE_LIMIT_STORAGE": "memcached://x"})
    ok = Settings.from_env({"MOVIEREC_RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/0"})
    assert ok.serving.rate_limit_storage.startswith("redis://")
