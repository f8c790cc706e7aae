"""Audio end to end with the openai SDK: transcriptions and translations in every
response format (billed per second of audio, or by tokens), speech streamed to a file
(billed per character), a failed attempt whose upload is replayed to the next channel,
and a 20 MB upload through a separate ``relaykit serve`` whose memory does not grow by
the file's size."""

from __future__ import annotations

import hashlib
import io
import re
import struct
from decimal import Decimal
from pathlib import Path

import aiohttp
import openai
import pytest

from relaykit.store import accounts, billing
from relaykit.store.store import Store
from tests.cli.cli_support import spawn
from tests.fakes_more import FakeOpenAIMedia

from .conftest import OpenAIFactory, StartRelay
from .harness import UPSTREAM_KEY, write_config
from .media_support import Media, cost, media  # noqa: F401 - the fixture

pytestmark = pytest.mark.asyncio
TRANSCRIPT = "Hello from fake-openai audio."


def wav(seconds: float, rate: int = 16_000) -> bytes:
    """A mono 16-bit WAV of silence: 32000 bytes per second at 16 kHz."""
    data = b"\x00\x00" * int(seconds * rate)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", len(data)) + data)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK deprecates audio.translations
async def test_transcription_in_every_format_billed_per_second(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("ann"))
    audio = wav(2.0)  # the fake hears size / 32000 seconds: 2.0014 s (the header counts too)
    heard = round(len(audio) / 32000, 3)

    got = await c.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio, "audio/wav"))
    assert got.text == TRANSCRIPT
    seen = media.openai.last
    assert seen.fields["model"] == "whisper-1"
    assert seen.files == [("file", "a.wav", len(audio), hashlib.sha256(audio).hexdigest())]
    text = await c.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio), response_format="text")
    assert isinstance(text, str) and text.strip() == TRANSCRIPT
    srt = await c.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio), response_format="srt")
    assert "-->" in srt
    vtt = await c.audio.transcriptions.create(model="whisper-ratio", file=("a.wav", audio), response_format="vtt")
    assert vtt.startswith("WEBVTT")
    verbose = await c.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio),
                                                  response_format="verbose_json", timestamp_granularities=["segment"])
    assert verbose.duration == heard and verbose.segments
    translated = await c.audio.translations.create(model="whisper-1", file=("a.wav", audio))
    assert translated.text == TRANSCRIPT
    assert media.openai.last.path == "/v1/audio/translations"

    await media.relay.settled(6)
    per_second = Decimal("0.0001")
    by_header = Decimal(len(audio) - 44) / 32000  # text format: relaykit reads the WAV header itself
    assert media.charges("ann") == [cost(per_second * Decimal(str(heard))), cost(per_second * by_header),
                                    cost(per_second * Decimal(str(heard))), cost(per_second * Decimal(str(heard))),
                                    cost(per_second * Decimal(str(heard))), cost(per_second * Decimal(str(heard)))]
    logs = media.relay.logs()
    assert [lg["dialect"] for lg in logs] == ["audio.transcriptions"] * 5 + ["audio.translations"]
    assert not any(lg["estimated"] for lg in logs)


async def test_unknown_length_is_estimated_and_token_models_bill_tokens(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("bea"))
    blob = b"ID3 not really an mp3" * 1600  # 33600 bytes, no header relaykit can read
    await c.audio.transcriptions.create(model="whisper-1", file=("a.mp3", blob, "audio/mpeg"), response_format="text")
    got = await c.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.mp3", io.BytesIO(blob)))
    assert got.usage is not None
    await media.relay.settled(2)
    logs = media.relay.logs()
    assert logs[0]["estimated"] and not logs[1]["estimated"]
    assert (logs[1]["prompt_tokens"], logs[1]["completion_tokens"]) == (120, 4)
    guessed = Decimal(len(blob)) / 16000  # 128 kbit/s when the length is unknown
    audio_in, text_out = Decimal(6) * 120, Decimal(10) * 4
    assert media.charges("bea") == [cost(Decimal("0.0001") * guessed), cost((audio_in + text_out) / 1_000_000)]


async def test_speech_streams_to_a_file_billed_per_character(media: Media, oai: OpenAIFactory, tmp_path: Path) -> None:
    c = oai(media.relay.base, media.key("cy"))
    text = "Relaykit speaks this sentence aloud."
    out = tmp_path / "speech.pcm"
    async with c.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=text,
                                                             response_format="pcm") as resp:
        assert resp.headers["content-type"] == "audio/pcm"
        await resp.stream_to_file(out)
    assert out.stat().st_size == 1000 * len(text)
    audio = await c.audio.speech.create(model="tts-ratio", voice="alloy", input="short one")
    assert len(audio.content) == 1000 * len("short one")
    assert media.openai.last.json["model"] == "tts-ratio"
    await media.relay.settled(2)
    assert media.charges("cy") == [cost(Decimal(15) * len(text) / 1_000_000),
                                   cost(Decimal(15) * len("short one") / 1_000_000)]
    with pytest.raises(openai.BadRequestError):
        await c.audio.speech.create(model="tts-1", voice="alloy", input="")


async def test_a_failed_attempt_replays_the_upload_to_the_next_channel(relay_factory: StartRelay,
                                                                       oai: OpenAIFactory) -> None:
    first, second = FakeOpenAIMedia(UPSTREAM_KEY), FakeOpenAIMedia(UPSTREAM_KEY)
    await first.start()
    await second.start()
    try:
        relay = await relay_factory(f"""
models:
  whisper-1: {{per_second: 0.0001}}
channels:
  - {{name: first, type: openai, base_url: "{first.url}", keys: ["{UPSTREAM_KEY}"], models: [whisper-1], priority: 10}}
  - {{name: second, type: openai, base_url: "{second.url}", keys: ["{UPSTREAM_KEY}"], models: [whisper-1]}}
""")
        relay.user("dan", quota=500_000)
        c = oai(relay.base, relay.token("dan"))
        audio = bytes(range(256)) * 4000  # 1 MB, read whole by the failing upstream before it answers
        first.script = [503]
        got = await c.audio.transcriptions.create(model="whisper-1", file=("big.bin", io.BytesIO(audio)))
        assert got.text == TRANSCRIPT
        assert second.last.files == [("file", "big.bin", len(audio), hashlib.sha256(audio).hexdigest())]
        assert second.last.fields == {"model": "whisper-1"}
        await relay.settled(1)
        log = relay.logs()[0]
        assert log["channel"] == "second" and '"status":503' in log["attempts"]
    finally:
        await first.stop()
        await second.stop()


def _peak_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert m, status
    return int(m.group(1))


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to read peak memory")
async def test_a_20_mb_upload_does_not_grow_relaykit_by_its_size(tmp_path: Path, oai: OpenAIFactory) -> None:
    fake, spare = FakeOpenAIMedia(UPSTREAM_KEY), FakeOpenAIMedia(UPSTREAM_KEY)
    await fake.start()
    await spare.start()
    config = write_config(tmp_path, f"""
server: {{host: 127.0.0.1, port: 0, max_body_mb: 32}}
models:
  whisper-1: {{per_second: 0.0001}}
channels:
  - {{name: main, type: openai, base_url: "{fake.url}", keys: ["{UPSTREAM_KEY}"], models: [whisper-1], priority: 1}}
  - {{name: spare, type: openai, base_url: "{spare.url}", keys: ["{UPSTREAM_KEY}"], models: [whisper-1]}}
""")
    store = Store(f"sqlite:///{tmp_path / 'relaykit.db'}")
    store.migrate()

    def make(t: object) -> str:
        user = accounts.create_user(t, "big", group="default")
        billing.topup(t, "big", 500_000)
        return accounts.create_token(t, user_id=user.id, name="t", quota=None, expires_at=None, group=None,
                                     models=[], ips=[], rpm=None, tpm=None)[1]
    key = store.tx(make)
    big = tmp_path / "big.wav"
    with big.open("wb") as f:
        f.write(wav(0.5))
        block = bytes(range(256)) * 4096
        for _ in range(20):
            f.write(block)  # 20 MiB more
    try:
        with spawn("serve", "--port", "0", "--config", config, cwd=tmp_path) as (proc, out):
            line = out.wait_for(lambda s: "listening on" in s, timeout=20)
            base = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            assert base, line
            c = oai(base.group(1) + "/v1", key)
            await c.audio.transcriptions.create(model="whisper-1", file=("warm.wav", wav(0.1)))  # warm up
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # reset the peak to the current size
            before = _peak_kb(proc.pid)
            with big.open("rb") as f:
                got = await c.audio.transcriptions.create(model="whisper-1", file=("big.wav", f))
            assert got.text == TRANSCRIPT
            grown = _peak_kb(proc.pid) - before
            assert fake.last.files[0][2] == big.stat().st_size
            assert grown < 8 * 1024, f"relaykit grew by {grown} kB for a {big.stat().st_size >> 20} MB upload"
    finally:
        await fake.stop()
        await spare.stop()
        store.stop()


async def test_a_file_sent_before_the_model_field_is_spooled_then_sent(media: Media) -> None:
    key = media.key("eve")
    audio = wav(1.0)
    form = aiohttp.FormData()
    form.add_field("file", audio, filename="first.wav", content_type="audio/wav")  # before the model
    form.add_field("model", "whisper-1")
    form.add_field("response_format", "verbose_json")
    async with aiohttp.ClientSession() as s:
        async with s.post(media.relay.base + "/audio/transcriptions", data=form,
                          headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["text"] == TRANSCRIPT
    seen = media.openai.last
    assert seen.files == [("file", "first.wav", len(audio), hashlib.sha256(audio).hexdigest())]
    assert seen.fields == {"model": "whisper-1", "response_format": "verbose_json"}
    await media.relay.settled(1)
    assert media.charges("eve") == [cost(Decimal("0.0001") * Decimal(str(round(len(audio) / 32000, 3))))]

    form = aiohttp.FormData()
    form.add_field("file", b"abc", filename="x.wav", content_type="audio/wav")
    async with aiohttp.ClientSession() as s:
        async with s.post(media.relay.base + "/audio/transcriptions", data=form,
                          headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 400 and "'model'" in (await r.json())["error"]["message"]
        async with s.post(media.relay.base + "/audio/transcriptions", json={"model": "whisper-1"},
                          headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 400 and "multipart" in (await r.json())["error"]["message"]
