"""Issue 3 errors per dialect: each official SDK raises its own typed exception.

401 (bad key), 402 (balance too low), 404 (unknown model) come from relaykit itself and
must be in the client's envelope; a mid-stream upstream error (the fake's
``error_mid_stream`` mode: three events, then the vendor's in-stream error) must reach
the client as that client's in-stream error, whichever dialect the upstream speaks.
Nothing of a refused request reaches an upstream or costs anything.
"""

from __future__ import annotations

import gc
import warnings
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from openai.types.responses import ResponseFailedEvent

from .dialect_fixtures import (CLIENTS, GENAI_WARNING, MODEL, UPSTREAMS, Clients, module_fixtures, settled_for,
                               world, World)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), GENAI_WARNING]

SMALL = 10  # quota units: far below any hold


shared, clients = module_fixtures("errors")


def upstream_count(w: World) -> int:
    return sum(len(f.requests) for f in w.fakes.values())


async def call_once(clients: Clients, client: str, key: str, model: str) -> Any:
    """One small non-streamed request in the client's dialect."""
    if client == "chat":
        return await clients.openai(key).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}])
    if client == "responses":
        return await clients.openai(key).responses.create(model=model, input="hi")
    if client == "anthropic":
        return await clients.anthropic(key).messages.create(
            model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    return await clients.genai(key).models.generate_content(model=model, contents="hi")


# --------------------------------------------------------------------------- 401 / 402 / 404


@pytest.mark.parametrize("client", CLIENTS)
async def test_bad_key_is_the_sdks_authentication_error(shared: World, clients: Clients, client: str) -> None:
    from google.genai import errors as genai_errors

    before = upstream_count(shared)
    bad = "sk-relaykit-no-such-key-0000"
    with pytest.raises(Exception) as info:
        await call_once(clients, client, bad, MODEL["chat"])
    exc = info.value
    if client in ("chat", "responses"):
        assert type(exc) is openai.AuthenticationError and exc.status_code == 401
        assert exc.code == "invalid_api_key"
    elif client == "anthropic":
        assert type(exc) is anthropic.AuthenticationError and exc.status_code == 401
        assert exc.body["type"] == "error" and exc.body["error"]["type"] == "authentication_error"
    else:
        assert type(exc) is genai_errors.ClientError
        assert (exc.code, exc.status) == (401, "UNAUTHENTICATED")
    assert bad not in str(exc)
    assert upstream_count(shared) == before


@pytest.mark.parametrize("client", CLIENTS)
async def test_low_balance_is_402_in_the_clients_envelope(shared: World, clients: Clients, client: str) -> None:
    from google.genai import errors as genai_errors

    user, uid, key = shared.customer(quota=SMALL)
    before = upstream_count(shared)
    with pytest.raises(Exception) as info:
        await call_once(clients, client, key, MODEL["chat"])
    exc = info.value
    if client in ("chat", "responses"):
        assert type(exc) is openai.APIStatusError
        assert (exc.status_code, exc.code) == (402, "insufficient_quota")
    elif client == "anthropic":
        assert isinstance(exc, anthropic.APIStatusError) and exc.status_code == 402
        assert exc.body["type"] == "error" and exc.body["error"]["type"] == "billing_error"
    else:
        assert type(exc) is genai_errors.ClientError and exc.code == 402
    assert "balance" in str(exc).lower()
    assert upstream_count(shared) == before
    assert shared.relay.balance(user) == SMALL
    assert [r for r in shared.relay.logs() if r["user_id"] == uid] == []


@pytest.mark.parametrize("client", CLIENTS)
async def test_unknown_model_is_the_sdks_not_found_error(shared: World, clients: Clients, client: str) -> None:
    from google.genai import errors as genai_errors

    user, _, key = shared.customer()
    before = upstream_count(shared)
    with pytest.raises(Exception) as info:
        await call_once(clients, client, key, "no-such-model-9")
    exc = info.value
    if client in ("chat", "responses"):
        assert type(exc) is openai.NotFoundError and exc.code == "model_not_found"
    elif client == "anthropic":
        assert type(exc) is anthropic.NotFoundError
        assert exc.body["type"] == "error" and exc.body["error"]["type"] == "not_found_error"
    else:
        assert type(exc) is genai_errors.ClientError and (exc.code, exc.status) == (404, "NOT_FOUND")
    assert "no-such-model-9" in str(exc)
    assert upstream_count(shared) == before
    assert shared.relay.balance(user) == 10 * 500_000


# --------------------------------------------------------------------------- mid-stream


class ResponsesStreamFailed(Exception):
    def __init__(self, event: Any) -> None:
        super().__init__(getattr(event, "type", "?"))
        self.event = event


def forget_genai_stream(exc: Any) -> Any:
    """A copy of a google-genai stream error, with the original collected here.

    google-genai 3.x raises on a stream's error chunk without closing its aiohttp
    response (it does so against Google too; the relay has ended the stream).  The
    response lives on in the exception's traceback and, collected later, would warn
    "Unclosed response/connection" inside some other test.  So the test keeps only a
    copy, and the garbage is collected now, where that warning is expected."""
    copy = type(exc)(exc.code, exc.details)
    exc.__traceback__ = None
    del exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return copy


async def stream_until_error(clients: Clients, client: str, key: str, model: str) -> tuple[str, BaseException]:
    """Stream a request; return the text seen before the error and the exception raised."""
    from google.genai import errors as genai_errors

    seen: list[str] = []
    try:
        if client == "chat":
            stream = await clients.openai(key).chat.completions.create(
                model=model, messages=[{"role": "user", "content": "tell me a story"}], stream=True)
            async for ch in stream:
                seen.append(ch.choices[0].delta.content or "" if ch.choices else "")
        elif client == "responses":
            # The openai SDK does not raise for a failed Responses stream, not even against
            # OpenAI: the failure is the typed last event ``response.failed``.  The stream
            # helper checks the lifecycle (created first, one response id throughout).
            events: list[Any] = []
            async with clients.openai(key).responses.stream(model=model, input="tell me a story") as s:
                async for ev in s:
                    events.append(ev)
                    if ev.type == "response.output_text.delta":
                        seen.append(ev.delta)
                with pytest.raises(RuntimeError, match="response.completed"):
                    await s.get_final_response()
            assert events[0].type == "response.created"
            assert len({e.response.id for e in events if e.type.startswith("response.") and hasattr(e, "response")}) == 1
            return "".join(seen), ResponsesStreamFailed(events[-1])
        elif client == "anthropic":
            async with clients.anthropic(key).messages.stream(
                    model=model, max_tokens=256, messages=[{"role": "user", "content": "tell me a story"}]) as s:
                async for text in s.text_stream:
                    seen.append(text)
        else:
            try:
                async for ch in await clients.genai(key).models.generate_content_stream(
                        model=model, contents="tell me a story"):
                    seen.append(ch.text or "")
            except genai_errors.APIError as exc:
                return "".join(seen), forget_genai_stream(exc)
    except Exception as exc:  # noqa: BLE001 - the test inspects what was raised
        return "".join(seen), exc
    raise AssertionError(f"the stream ended without an error; the client saw {''.join(seen)!r}")


# The answer text in the fake's first three stream events: OpenAI chat sends a role chunk
# and two words, Gemini one word per chunk, Responses and Anthropic only open the message.
TEXT_BEFORE_ERROR = {"chat": "Hello from", "resp": "", "claude": "", "gemini": "Hello from fake-gemini!"}


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
async def test_mid_stream_upstream_error_raises_in_the_sdk(shared: World, clients: Clients, client: str,
                                                          upstream: str) -> None:
    from google.genai import errors as genai_errors

    fake = shared.fakes[upstream]
    user, uid, key = shared.customer()
    fake.script = ["error_mid_stream"]
    text, exc = await stream_until_error(clients, client, key, MODEL[upstream])
    assert fake.script == [] and fake.requests[-1].mode == "error_mid_stream"
    # what the three events before the error said reached the user, nothing lost, nothing more
    assert text == TEXT_BEFORE_ERROR[upstream]
    if client == "chat":
        assert isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIStatusError)
    elif client == "responses":
        assert isinstance(exc, ResponsesStreamFailed)
        assert isinstance(exc.event, ResponseFailedEvent)
        assert exc.event.response.status == "failed" and exc.event.response.error.message
    elif client == "anthropic":
        assert isinstance(exc, anthropic.APIStatusError)
        assert exc.body["type"] == "error" and exc.body["error"]["type"] in ("api_error", "overloaded_error")
    else:
        assert isinstance(exc, genai_errors.APIError) and exc.code >= 500
    # the relay bills what it delivered (or nothing) and logs the failure
    log = (await settled_for(shared.relay, uid, 1))[0]
    assert log["status"] >= 500
    assert 10 * 500_000 - shared.relay.balance(user) == log["quota"]


SAME_DIALECT = {"chat": "chat", "responses": "resp", "anthropic": "claude", "gemini": "gemini"}


@pytest.mark.parametrize("client", CLIENTS)
async def test_upstream_silent_mid_passthrough_is_an_error_the_sdk_knows(
        client: str, tmp_path: Path) -> None:
    """A passthrough stream whose upstream goes silent after three events (the fake stalls
    for 30 s, the channels' idle timeout is 0.5 s): the client gets its dialect's in-stream
    error after the upstream's own events; for Responses a stand-alone ``error`` event,
    since a second ``response.created`` would break the SDK's stream helper."""
    from google.genai import errors as genai_errors

    upstream = SAME_DIALECT[client]
    async with world(tmp_path, idle=0.5) as w:
        clients = Clients(w.relay)
        fake = w.fakes[upstream]
        user, uid, key = w.customer()
        fake.script = ["stall_mid_stream:30"]
        try:
            text, exc = await stream_until_error(clients, client, key, MODEL[upstream])
        finally:
            await clients.aclose()
        assert text == TEXT_BEFORE_ERROR[upstream]
        if client == "chat":
            assert isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIStatusError)
        elif client == "responses":
            assert isinstance(exc, ResponsesStreamFailed) and exc.event.type == "error"
            assert exc.event.code == "server_error" and exc.event.message
        elif client == "anthropic":
            assert isinstance(exc, anthropic.APIStatusError) and exc.body["type"] == "error"
        else:
            assert isinstance(exc, genai_errors.ServerError)
        log = (await settled_for(w.relay, uid, 1))[0]
        assert log["status"] == 504
        assert 10 * 500_000 - w.relay.balance(user) == log["quota"]
        await fake.wait_idle()
