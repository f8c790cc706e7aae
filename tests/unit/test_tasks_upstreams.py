"""Pieces of the task upstream adapters: the outbound address guard, Kling's JWT,
Volcengine signing, task pricing, vendor answers classified."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
from decimal import Decimal
from typing import Any

import pytest

from relaykit.domain import Price
from relaykit.errors import InvalidRequest, UpstreamError
from relaykit.relay.tasks import adapter_for
from relaykit.relay.tasks.base import Http, Refused, percent
from relaykit.relay.tasks.jimeng import sign
from relaykit.relay.tasks.kling import jwt_for
from relaykit.relay.tasks.netguard import Blocked, BlockedAddress, PublicResolver, check_url, is_public
from relaykit.relay.tasks.pricing import price_for, task_quota


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1",
                                     "::ffff:127.0.0.1", "2002:7f00:1::", "255.255.255.255", "not an ip"])
def test_non_public_addresses(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert is_public(address)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/h", "http://[::1]/h", "http://169.254.169.254/latest",
                                 "ftp://example.com/x", "http://user:pw@example.com/", "http:///nohost",
                                 "file:///etc/passwd", "http://0x7f000001/", "http://2130706433/", "http://127.1/",
                                 "http://[::ffff:10.0.0.1]/"])
def test_urls_refused_before_connecting(url: str) -> None:
    with pytest.raises(Blocked):
        check_url(url)


def test_private_literals_allowed_only_when_configured() -> None:
    assert check_url("http://127.0.0.1:9/h", allow_private=True).port == 9
    assert check_url("https://hooks.example.com/x").host == "hooks.example.com"


async def test_resolver_keeps_only_public_addresses() -> None:
    class Inner:
        async def resolve(self, host: str, port: int, family: int) -> list[dict[str, Any]]:
            return [{"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
                    for a in {"mixed.test": ["10.0.0.5", "93.184.216.34"], "inside.test": ["127.0.0.1"]}[host]]

    allow = [False]
    resolver = PublicResolver(lambda: allow[0])
    resolver._inner = Inner()  # type: ignore[assignment]
    assert [r["host"] for r in await resolver.resolve("mixed.test", 80)] == ["93.184.216.34"]
    with pytest.raises(BlockedAddress):
        await resolver.resolve("inside.test", 80)
    allow[0] = True
    assert [r["host"] for r in await resolver.resolve("inside.test", 80)] == ["127.0.0.1"]


def _b64d(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_kling_jwt() -> None:
    token = jwt_for("AK123|SK456", 1_700_000_000)
    header, payload, signature = token.split(".")
    assert json.loads(_b64d(header)) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(_b64d(payload)) == {"iss": "AK123", "exp": 1_700_001_800, "nbf": 1_699_999_995}
    assert _b64d(signature) == hmac.new(b"SK456", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert jwt_for("plain-bearer", 0) == "plain-bearer"


def test_volcengine_signature_layout() -> None:
    url = "https://visual.example.com/?Action=CVSync2AsyncSubmitTask&Version=2022-08-31"
    h = sign("POST", url, b'{"a":1}', "AK", "SK", 1_700_000_000)
    assert h["X-Date"] == "20231114T221320Z" and h["Host"] == "visual.example.com"
    assert h["X-Content-Sha256"] == hashlib.sha256(b'{"a":1}').hexdigest()
    assert h["Authorization"].startswith("HMAC-SHA256 Credential=AK/20231114/cn-north-1/cv/request, "
                                         "SignedHeaders=content-type;host;x-content-sha256;x-date, Signature=")
    again = sign("POST", url, b'{"a":1}', "AK", "SK", 1_700_000_000)
    other = sign("POST", url, b'{"a":2}', "AK", "SK", 1_700_000_000)
    assert again["Authorization"] == h["Authorization"] != other["Authorization"]


def test_task_prices() -> None:
    prices = {"kling-v1": Price("kling-v1", per_call_usd=Decimal("0.5")),
              "kling-v1-pro": Price("kling-v1-pro", per_call_usd=Decimal("0.8")),
              "tokens": Price("tokens", model_ratio=Decimal(1))}
    per_call = prices["kling-v1"]
    assert task_quota(per_call, Decimal(1), 500_000, None) == 250_000
    assert task_quota(per_call, Decimal(1), 500_000, 4) == 250_000   # up to 5 s: the per-call price
    assert task_quota(per_call, Decimal(1), 500_000, 10) == 500_000  # 10 s: twice
    assert task_quota(per_call, Decimal("0.3"), 500_000, 8) == 120_000
    assert price_for(prices, "kling-v1", "pro") is prices["kling-v1-pro"]
    assert price_for(prices, "kling-v1", "std") is per_call
    with pytest.raises(InvalidRequest, match="per_call"):
        task_quota(prices["tokens"], Decimal(1), 500_000, 5)


def test_upstream_answers_classified() -> None:
    Http.check(200, {})
    for status in (401, 403, 408, 429, 500, 503):
        with pytest.raises(UpstreamError):
            Http.check(status, {"message": "x"})
    with pytest.raises(Refused, match="bad prompt"):
        Http.check(400, {"error": {"message": "bad prompt"}})
    assert (percent("42%"), percent(100), percent("x"), percent(250), percent(None)) == (42, 100, 0, 100, 0)


def test_adapters_by_channel_type_and_api() -> None:
    assert adapter_for("midjourney", "midjourney") is not None and adapter_for("midjourney", "video") is None
    assert adapter_for("openai", "video") is not None and adapter_for("openai", "suno") is None
    assert adapter_for("mock", "suno") is not None and adapter_for("anthropic", "video") is None
