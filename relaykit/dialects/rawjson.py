"""Minimal edits of a JSON body's bytes, for passthrough.

Passthrough must deliver the client's body byte for byte apart from the model name
(unknown fields, key order, number spellings, escapes all survive), and must not pay for
a parse-and-reserialise on the hot path.  ``replace_top_level`` finds the value of one
top-level key by scanning structural characters only (string contents are skipped with
``bytes.find``), so nested keys of the same name are never touched.
"""

from __future__ import annotations

import re

import orjson

_STRUCT = re.compile(rb'["{}\[\]]')
_WS = b" \t\r\n"


def _string_end(raw: bytes, start: int) -> int:
    """Index just past the string whose opening quote is at ``start``."""
    i = start + 1
    while True:
        j = raw.find(b'"', i)
        if j < 0:
            raise ValueError("unterminated string")
        k = j - 1
        backslashes = 0
        while raw[k] == 0x5C:  # backslash
            backslashes += 1
            k -= 1
        if backslashes % 2 == 0:
            return j + 1
        i = j + 1


def _skip_ws(raw: bytes, i: int) -> int:
    n = len(raw)
    while i < n and raw[i] in _WS:
        i += 1
    return i


def _value_end(raw: bytes, i: int) -> int:
    """Index just past the JSON value starting at ``i``."""
    c = raw[i:i + 1]
    if c == b'"':
        return _string_end(raw, i)
    if c in (b"{", b"["):
        depth = 0
        pos = i
        while True:
            m = _STRUCT.search(raw, pos)
            if m is None:
                raise ValueError("unterminated container")
            ch = m.group()
            if ch == b'"':
                pos = _string_end(raw, m.start())
                continue
            depth += 1 if ch in (b"{", b"[") else -1
            pos = m.end()
            if depth == 0:
                return pos
    # number, true, false, null: ends at , } ] or whitespace
    j = i
    n = len(raw)
    while j < n and raw[j] not in b",}] \t\r\n":
        j += 1
    return j


def top_level_span(raw: bytes, key: str) -> tuple[int, int] | None:
    """(start, end) of the value of top-level ``key`` in a JSON object, or None."""
    want = orjson.dumps(key)
    i = _skip_ws(raw, 0)
    if raw[i:i + 1] != b"{":
        return None
    i += 1
    while True:
        i = _skip_ws(raw, i)
        if raw[i:i + 1] == b"}":
            return None
        if raw[i:i + 1] != b'"':
            raise ValueError("expected a key")
        kend = _string_end(raw, i)
        name = raw[i:kend]
        i = _skip_ws(raw, kend)
        if raw[i:i + 1] != b":":
            raise ValueError("expected ':'")
        i = _skip_ws(raw, i + 1)
        vend = _value_end(raw, i)
        if name == want or (b"\\" in name and orjson.loads(name) == key):
            return i, vend
        i = _skip_ws(raw, vend)
        if raw[i:i + 1] == b",":
            i += 1


def replace_top_level(raw: bytes, key: str, value: object) -> bytes:
    """Set top-level ``key`` to ``value``: replaced in place, or inserted first when absent."""
    encoded = orjson.dumps(value)
    span = top_level_span(raw, key)
    if span is not None:
        start, end = span
        if raw[start:end] == encoded:
            return raw
        return raw[:start] + encoded + raw[end:]
    i = _skip_ws(raw, 0) + 1
    rest = raw[_skip_ws(raw, i):_skip_ws(raw, i) + 1]
    sep = b"" if rest == b"}" else b","
    return raw[:i] + orjson.dumps(key) + b":" + encoded + sep + raw[i:]
