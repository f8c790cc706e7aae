"""The pure translators of the non-chat endpoints: embeddings, rerank, images, audio,
realtime."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal

import pytest

from relaykit.dialects import audio, embeddings, images, realtime, rerank
from relaykit.domain import Usage

# --------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("inp, texts, ids, count", [
    ("one", ("one",), 0, 1),
    (["a", "b c"], ("a", "b c"), 0, 2),
    ([1, 2, 3], (), 3, 1),
    ([[1, 2], [3]], (), 3, 2),
])
def test_openai_inputs_of_every_kind(inp: object, texts: tuple[str, ...], ids: int, count: int) -> None:
    req = embeddings.parse_openai({"model": "m", "input": inp})
    assert (req.texts, req.token_ids, req.count, req.encoding) == (texts, ids, count, "float")


@pytest.mark.parametrize("body, needle", [
    ({"input": "x"}, "'model'"),
    ({"model": "m", "input": []}, "'input'"),
    ({"model": "m", "input": [1, "a"]}, "'input'"),
    ({"model": "m", "input": [""]}, "must not be empty"),
    ({"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
    ({"model": "m", "input": ["x"] * 2049}, "2048"),
])
def test_openai_input_errors(body: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        embeddings.parse_openai(body)


def test_base64_is_little_endian_float32_both_ways() -> None:
    vec = [0.5, -1.25, 3.0]
    encoded = embeddings.encode_base64(vec)
    assert base64.b64decode(encoded) == struct.pack("<3f", *vec)
    assert embeddings.decode_base64(encoded) == vec
    body = {"data": [{"index": 0, "embedding": vec}]}
    assert embeddings.reencode_openai(body, "base64") and body["data"][0]["embedding"] == encoded
    assert not embeddings.reencode_openai(body, "base64")
    assert embeddings.reencode_openai(body, "float") and body["data"][0]["embedding"] == vec


def test_gemini_requests_become_openai_and_back() -> None:
    req = embeddings.parse_gemini({"requests": [
        {"model": "models/e", "content": {"parts": [{"text": "a"}, {"text": "b"}]}, "outputDimensionality": 8},
        {"model": "models/e", "content": {"parts": [{"text": "c"}]}, "outputDimensionality": 8}]},
        "batchEmbedContents", "e")
    assert embeddings.openai_body(req, "up") == {"model": "up", "input": ["a\nb", "c"], "encoding_format": "float",
                                                 "dimensions": 8}
    renamed = embeddings.gemini_body(req, "up-model")
    assert [r["model"] for r in renamed["requests"]] == ["models/up-model"] * 2
    assert embeddings.gemini_response("batchEmbedContents", [[1.0], embeddings.encode_base64([2.0])]) == {
        "embeddings": [{"values": [1.0]}, {"values": [2.0]}]}
    single = embeddings.parse_gemini({"content": {"parts": [{"text": "x"}]}}, "embedContent", "e")
    assert single.count == 1 and embeddings.gemini_response("embedContent", [[3.0]]) == {"embedding": {"values": [3.0]}}
    with pytest.raises(ValueError, match="same outputDimensionality"):
        embeddings.parse_gemini({"requests": [{"content": {"parts": []}, "outputDimensionality": 1},
                                              {"content": {"parts": []}, "outputDimensionality": 2}]},
                                "batchEmbedContents", "e")
    image = embeddings.parse_gemini({"content": {"parts": [{"inline_data": {"data": "x"}}]}}, "embedContent", "e")
    with pytest.raises(ValueError, match="Only text"):
        embeddings.openai_body(image, "up")


def test_openai_texts_to_gemini_and_token_ids_refused() -> None:
    req = embeddings.parse_openai({"model": "m", "input": ["x", "y"], "dimensions": 3})
    assert embeddings.gemini_body(req, "g") == {"requests": [
        {"model": "models/g", "content": {"parts": [{"text": "x"}]}, "outputDimensionality": 3},
        {"model": "models/g", "content": {"parts": [{"text": "y"}]}, "outputDimensionality": 3}]}
    with pytest.raises(ValueError, match="Token-id"):
        embeddings.gemini_body(embeddings.parse_openai({"model": "m", "input": [1, 2]}), "g")


def test_usage_and_vectors_from_either_upstream() -> None:
    assert embeddings.prompt_tokens_of({"usage": {"prompt_tokens": 4, "total_tokens": 4}}) == 4
    assert embeddings.prompt_tokens_of({"usageMetadata": {"promptTokenCount": 6}}) == 6
    assert embeddings.prompt_tokens_of({"embeddings": []}) is None
    assert embeddings.vectors_from_openai({"data": [{"index": 1, "embedding": [2.0]},
                                                    {"index": 0, "embedding": [1.0]}]}) == [[1.0], [2.0]]
    with pytest.raises(ValueError):
        embeddings.vectors_from_gemini({"embeddings": [{"nope": 1}]})


# --------------------------------------------------------------------------- rerank

def test_rerank_shape_detection() -> None:
    assert rerank.detect_shape({}, {}, v2=True) == "cohere_v2"
    assert rerank.detect_shape({"return_len": False}, {}, v2=False) == "xinference"
    assert rerank.detect_shape({}, {"X-Fern-SDK-Name": "cohere"}, v2=False) == "cohere_v1"
    assert rerank.detect_shape({"rank_fields": ["a"]}, {}, v2=False) == "cohere_v1"
    assert rerank.detect_shape({"top_n": 1}, {"Authorization": "x"}, v2=False) == "jina"


def test_rerank_request_defaults_and_errors() -> None:
    body = {"model": "m", "query": "q", "documents": ["a", {"text": "b"}]}
    assert rerank.parse(body, "jina").return_documents is True
    assert rerank.parse(body, "cohere_v1").return_documents is False
    for bad, needle in (({**body, "query": ""}, "query"), ({**body, "documents": []}, "documents"),
                        ({**body, "top_n": 0}, "top_n"), ({**body, "documents": [1]}, r"documents\[0\]"),
                        ({**body, "return_documents": "yes"}, "return_documents")):
        with pytest.raises(ValueError, match=needle):
            rerank.parse(bad, "jina")


def test_documents_as_text_and_per_wire_bodies() -> None:
    req = rerank.parse({"model": "m", "query": "q", "top_n": 1, "rank_fields": ["title"],
                        "documents": ["plain", {"title": "T", "body": "ignored"}]}, "cohere_v1")
    assert req.texts() == ["plain", "title: T"]
    assert rerank.upstream_body(req, "cohere", "up") == {"model": "up", "query": "q", "documents": ["plain", "title: T"],
                                                          "top_n": 1}
    jina = rerank.parse({"model": "m", "query": "q", "documents": [{"text": "a"}, {"image": "u"}]}, "jina")
    assert rerank.upstream_body(jina, "jina", "up")["documents"] == [{"text": "a"}, {"image": "u"}]
    xi = rerank.upstream_body(jina, "xinference", "up")
    assert xi["return_len"] is True and xi["return_documents"] is False and xi["documents"][0] == "a"


def test_upstream_results_sorted_cut_and_counted() -> None:
    got = rerank.read_upstream({"results": [{"index": 0, "relevance_score": 0.1}, {"index": 2, "relevance_score": 0.9},
                                            {"index": 1, "relevance_score": 0.5}], "usage": {"total_tokens": 7}}, 3, 2)
    assert got == rerank.Ranked(((2, 0.9), (1, 0.5)), 7, None)
    xi = rerank.read_upstream({"results": [{"index": 0, "relevance_score": 1}],
                               "meta": {"tokens": {"input_tokens": 5, "output_tokens": 0}}}, 1, None)
    assert xi.tokens == 5
    co = rerank.read_upstream({"results": [], "meta": {"billed_units": {"search_units": 2}}}, 1, None)
    assert (co.tokens, co.search_units) == (None, 2)
    assert rerank.read_upstream({"data": [{"index": 0, "score": 0.3}]}, 1, None).results == ((0, 0.3),)
    with pytest.raises(ValueError, match="not sent"):
        rerank.read_upstream({"results": [{"index": 5, "relevance_score": 1}]}, 2, None)


def test_each_client_shape_rendered() -> None:
    ranked = rerank.Ranked(((1, 0.9),), None, None)
    body = {"model": "m", "query": "q", "documents": ["a", "b"]}
    jina = rerank.render(rerank.parse(body, "jina"), ranked, response_id="r", tokens=3)
    assert jina == {"model": "m", "usage": {"total_tokens": 3},
                    "results": [{"index": 1, "relevance_score": 0.9, "document": {"text": "b"}}]}
    v2 = rerank.render(rerank.parse(body, "cohere_v2"), ranked, response_id="r", tokens=3)
    assert v2 == {"id": "r", "results": [{"index": 1, "relevance_score": 0.9}],
                  "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}}
    xi = rerank.render(rerank.parse({**body, "return_len": True}, "xinference"), ranked, response_id="r", tokens=3)
    assert xi["results"][0]["document"] is None and xi["meta"]["tokens"] == {"input_tokens": 3, "output_tokens": 0}
    assert rerank.search_units(250) == 3
    assert rerank.error_body(400, "bad", "invalid_request") == {"message": "bad", "detail": "bad"}


# --------------------------------------------------------------------------- images

def test_image_requests_and_responses() -> None:
    req = images.parse({"model": "dall-e-3", "prompt": "p", "n": 2, "size": "1024x1024", "quality": "hd"})
    assert req.images() == (("1024x1024", "hd"),) * 2
    edit = images.parse({"model": "m", "prompt": "p", "n": "3"}, edit=True)  # multipart fields are text
    assert edit.n == 3 and edit.size == ""
    for bad, needle in (({"prompt": "p"}, "model"), ({"model": "m"}, "prompt"),
                        ({"model": "m", "prompt": "p", "n": 11}, "'n'"),
                        ({"model": "m", "prompt": "p", "response_format": "png"}, "response_format"),
                        ({"model": "m", "prompt": "p", "stream": True}, "Streamed")):
        with pytest.raises(ValueError, match=needle):
            images.parse(bad)
    resp = {"created": 1, "data": [{}, {}], "size": "1536x1024", "quality": "high",
            "usage": {"input_tokens": 3, "output_tokens": 100}}
    assert images.images_in(resp, req) == (("1536x1024", "high"),) * 2
    assert images.token_usage(resp) == (3, 100) and images.token_usage({"data": []}) is None


# --------------------------------------------------------------------------- audio

def _wav(data_bytes: int, rate: int = 8000) -> bytes:
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", data_bytes))


def test_what_a_transcription_heard_in_every_format() -> None:
    assert audio.heard(b'{"text":"x","usage":{"type":"duration","seconds":3}}', "json").seconds == 3
    assert audio.heard(b'{"text":"x","duration":2.5}', "verbose_json").seconds == Decimal("2.5")
    tokens = audio.heard(b'{"text":"x","usage":{"type":"tokens","input_tokens":9,"output_tokens":2,'
                         b'"input_token_details":{"audio_tokens":9}}}', "json")
    assert (tokens.input_tokens, tokens.output_tokens, tokens.audio_tokens, tokens.seconds) == (9, 2, 9, None)
    assert audio.heard(b"1\n00:00:00,000 --> 00:00:01,000\na\n\n2\n00:00:01,000 --> 00:01:02,250\nb\n",
                       "srt").seconds == Decimal("62.25")
    assert audio.heard(b"WEBVTT\n\n00:00:00.000 --> 00:00:04.500\nx\n", "vtt").seconds == Decimal("4.5")
    assert audio.heard(b"just text", "text") == audio.Heard()
    assert audio.heard(b"not json", "json") == audio.Heard()


def test_audio_lengths_from_headers_and_bytes() -> None:
    head = _wav(16000)
    assert audio.wav_seconds(head, len(head) + 16000) == 1
    assert audio.wav_seconds(head, len(head) + 8000) == Decimal("0.5")  # a truncated file: what is there
    assert audio.wav_seconds(b"ID3" + bytes(60), 1000) is None
    assert audio.speech_seconds("pcm", b"", 96000) == 2
    assert audio.speech_seconds("mp3", b"", 96000) is None


def test_speech_and_transcription_fields() -> None:
    req = audio.parse_speech({"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "wav"})
    assert req.content_type == "audio/wav" and not req.sse
    assert audio.parse_speech({"model": "m", "input": "x", "voice": "v", "stream_format": "sse"}).content_type == \
        "text/event-stream"
    for bad in ({"model": "m", "voice": "v"}, {"model": "m", "input": "x"},
                {"model": "m", "input": "x", "voice": "v", "response_format": "ogg"}):
        with pytest.raises(ValueError):
            audio.parse_speech(bad)
    assert audio.parse_transcription_fields({"model": "w", "response_format": "srt"}) == ("w", "srt")
    with pytest.raises(ValueError, match="response_format"):
        audio.parse_transcription_fields({"model": "w", "response_format": "docx"})


# --------------------------------------------------------------------------- realtime

def test_realtime_key_usage_and_events() -> None:
    assert realtime.key_from_protocols("realtime, openai-insecure-api-key.sk-abc, openai-beta.realtime-v1") == "sk-abc"
    assert realtime.key_from_protocols("realtime") is None and realtime.key_from_protocols(None) is None
    assert realtime.event_of('{"type":"response.output_audio.delta","delta":"AAAA"}') is None
    assert realtime.event_of('{"type":"session.created"}') is None
    delta = realtime.event_of('{"type":"response.output_text.delta","delta":"Hi"}')
    assert delta is not None and realtime.delta_text(delta) == "Hi"
    done = realtime.event_of('{"type":"response.done","response":{"usage":{"input_tokens":200,"output_tokens":100,'
                             '"input_token_details":{"cached_tokens":10,"audio_tokens":150},'
                             '"output_token_details":{"audio_tokens":80}}}}')
    assert done is not None and realtime.usage_of(done) == Usage(
        prompt_tokens=200, completion_tokens=100, cache_read_tokens=10, audio_prompt_tokens=150,
        audio_completion_tokens=80)
    assert '"code":"insufficient_quota"' in realtime.error_event("m", code="insufficient_quota",
                                                                  kind="insufficient_quota", event_id="e")
