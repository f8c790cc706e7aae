"""Changes made with the CLI reach a running server within 2 seconds (SPEC §1)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import openai

from tests.fakes import FakeOpenAIChat

from .conftest import OpenAIFactory, StartRelay, openai_config

USD = 500_000


def cli(relay_config: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relaykit", *args, "--config", relay_config],
                          capture_output=True, text=True, timeout=60)


async def refused_within(c: openai.AsyncOpenAI, seconds: float) -> float:
    """Time from now until a request is refused with 401/403 (fails after ``seconds``)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < seconds:
        try:
            await c.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
        except (openai.AuthenticationError, openai.PermissionDeniedError):
            return loop.time() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"still accepted {seconds} s after the CLI change")


async def test_token_revoked_with_the_cli_is_refused_within_two_seconds(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("mia", quota=USD)
    created = cli(str(relay.config_path), "token", "create", "--user", "mia", "--name", "live", "--json")
    assert created.returncode == 0, created.stderr
    import json
    token = json.loads(created.stdout)
    c = oai(relay.base, token["key"])
    # a token created by the CLI a moment ago already works
    ok = await c.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content
    revoked = cli(str(relay.config_path), "token", "revoke", str(token["id"]))
    assert revoked.returncode == 0, revoked.stderr
    took = await refused_within(c, 2.0)
    assert took < 2.0
    await relay.settled(len(relay.logs()))


async def test_user_disabled_and_topped_up_with_the_cli(relay_factory: StartRelay, fake_openai: FakeOpenAIChat,
                                                       oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("noa")
    c = oai(relay.base, relay.token("noa"))
    msgs = [{"role": "user", "content": "hi"}]
    try:
        await c.chat.completions.create(model="mock-gpt", messages=msgs)
        raise AssertionError("a user with no balance was served")
    except openai.APIStatusError as exc:
        assert exc.status_code == 402
    assert cli(str(relay.config_path), "user", "topup", "noa", "1").returncode == 0
    resp = await c.chat.completions.create(model="mock-gpt", messages=msgs)  # balance is read from the DB
    assert resp.choices[0].message.content
    assert cli(str(relay.config_path), "user", "disable", "noa").returncode == 0
    assert await refused_within(c, 2.0) < 2.0
    await relay.settled(1)
