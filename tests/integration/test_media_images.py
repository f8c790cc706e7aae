"""Images end to end with the openai SDK: generations (b64_json and url, n, size and
quality factors, a token-priced gpt-image model) and edits (multipart, several images
and a mask, piped to the upstream), each billed per image in the ledger."""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal

import openai
import pytest

from .conftest import OpenAIFactory
from .media_support import Media, cost, media  # noqa: F401 - the fixture

pytestmark = pytest.mark.asyncio


async def test_generate_b64_and_url_priced_per_image_with_factors(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("ann"))
    got = await c.images.generate(model="dall-e-3", prompt="a red fox", size="1792x1024", quality="hd",
                                  response_format="b64_json")
    assert got.data is not None and got.data[0].b64_json == "aW1hZ2U=" and got.created == 1700000000
    assert media.openai.last.json == {"model": "dall-e-3", "prompt": "a red fox", "size": "1792x1024",
                                      "quality": "hd", "response_format": "b64_json"}
    got = await c.images.generate(model="dall-e-2", prompt="two cats", n=2, size="512x512", response_format="url")
    assert got.data is not None and [d.url for d in got.data] == ["https://img.example/0.png",
                                                                  "https://img.example/1.png"]
    # a size the table does not list costs the dearest listed factor, never less
    await c.images.generate(model="dall-e-3", prompt="a blue fox", size="1024x1024", quality="auto")
    # no size / quality: the model's default, the base price
    await c.images.generate(model="dall-e-3", prompt="plain")
    await media.relay.settled(4)
    assert media.charges("ann") == [cost("0.16"), cost("0.04"), cost("0.08"), cost("0.04")]
    assert [lg["dialect"] for lg in media.relay.logs()] == ["images.generations"] * 4


async def test_token_priced_image_model_and_group_ratio(media: Media, oai: OpenAIFactory) -> None:
    media.relay.user("half-user", quota=5 * 500_000, group="half")
    c = oai(media.relay.base, media.relay.token("half-user"))
    got = await c.images.generate(model="gpt-image-1", prompt="a small lighthouse at dusk", n=2)
    assert got.usage is not None and got.usage.output_tokens == 2112
    await media.relay.settled(1)
    usd = (Decimal(5) * 5 + Decimal(40) * 2112) / 1_000_000
    assert media.charges("half-user") == [cost(usd, Decimal("0.5"))]
    log = media.relay.logs()[0]
    assert (log["prompt_tokens"], log["completion_tokens"], log["estimated"]) == (5, 2112, False)


async def test_edit_sends_every_image_and_the_mask(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("bea"))
    img1, img2, mask = b"\x89PNG first" * 5000, b"\x89PNG second" * 7000, b"\x89PNG mask" * 100
    got = await c.images.edit(model="dall-e-2", prompt="add a hat", image=[("a.png", img1, "image/png"),
                                                                           ("b.png", img2, "image/png")],
                              mask=("m.png", io.BytesIO(mask), "image/png"), size="1024x1024")
    assert got.data is not None and got.data[0].b64_json == "aW1hZ2U="
    seen = media.openai.last
    assert seen.fields["model"] == "dall-e-2" and seen.fields["prompt"] == "add a hat"
    assert seen.files == [("image[]", "a.png", len(img1), hashlib.sha256(img1).hexdigest()),
                          ("image[]", "b.png", len(img2), hashlib.sha256(img2).hexdigest()),
                          ("mask", "m.png", len(mask), hashlib.sha256(mask).hexdigest())]
    await media.relay.settled(1)
    assert media.charges("bea") == [cost("0.02")]
    assert media.relay.logs()[0]["dialect"] == "images.edits"


async def test_image_errors(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("cy"))
    with pytest.raises(openai.BadRequestError) as info:
        await c.images.generate(model="dall-e-3", prompt="x", n=11)
    assert "'n'" in info.value.message
    with pytest.raises(openai.BadRequestError):
        await c.images.generate(model="dall-e-3", prompt="")
    with pytest.raises(openai.BadRequestError) as info:  # priced per second of audio: cannot meter images
        await c.images.generate(model="whisper-1", prompt="x")
    assert info.value.code == "model_not_priced" and "per second" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        await c.images.edit(model="dall-e-2", prompt="x", image=("a.png", b"png", "image/png"), n=0)
    with pytest.raises(openai.AuthenticationError):
        await oai(media.relay.base, "sk-nope").images.generate(model="dall-e-3", prompt="x")
    assert media.openai.seen == []
    assert media.charges("cy") == []
