"""Byte-level passthrough edits keep everything but the edited value."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaykit.dialects.rawjson import replace_top_level, top_level_span


def test_only_the_top_level_model_changes() -> None:
    raw = (b'{ "metadata": {"model": "gpt-4"}, "messages": [{"content": "say \\"model\\": \\"gpt-4\\""}],\n'
           b'  "model" : "gpt-4", "x-unknown": 1.50e+2 }')
    out = replace_top_level(raw, "model", "gpt-4o")
    assert out == raw.replace(b'"model" : "gpt-4"', b'"model" : "gpt-4o"')
    assert orjson.loads(out)["metadata"]["model"] == "gpt-4"


def test_missing_key_is_inserted_first() -> None:
    assert replace_top_level(b'{"a":1}', "stream_options", {"include_usage": True}) == \
        b'{"stream_options":{"include_usage":true},"a":1}'
    assert replace_top_level(b"{}", "model", "m") == b'{"model":"m"}'


def test_escaped_key_names_are_recognised() -> None:
    raw = b'{"mo\\u0064el": "a", "b": [1, {"c": "]"}]}'
    assert orjson.loads(replace_top_level(raw, "model", "z")) == {"model": "z", "b": [1, {"c": "]"}]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.text(max_size=12))
def test_replacement_equals_a_parse_and_set(body: dict, model: str) -> None:  # type: ignore[type-arg]
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    want = dict(body)
    want["model"] = model
    assert orjson.loads(replace_top_level(raw, "model", model)) == want
    span = top_level_span(raw, "model")
    assert (span is not None) == ("model" in body)


def test_not_an_object() -> None:
    assert top_level_span(b"[1,2]", "model") is None
    with pytest.raises(ValueError):
        top_level_span(b'{"a": "unterminated', "b")
