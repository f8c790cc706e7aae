"""Token estimation, used where an upstream reports no usage and for hold sizes.

The rule (documented for operators): every non-ASCII character (CJK, emoji, ...) counts
as one token, and ASCII text as one token per four characters, rounded up.  It is
deliberately on the high side for English, so estimated charges rarely undercount.
"""

from __future__ import annotations

from ..domain import Usage

IMAGE_TOKENS = 1_000  # hold estimate per image/audio/file part
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    if not text:
        return 0
    ascii_len = len(text.encode("ascii", "ignore"))
    other = len(text) - ascii_len
    return -(-ascii_len // 4) + other


def usage_from_hub(hub_usage: dict[str, object] | None, *, estimated: bool = False) -> Usage | None:
    if not isinstance(hub_usage, dict):
        return None

    def num(v: object) -> int:
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0

    pdet = hub_usage.get("prompt_tokens_details")
    cdet = hub_usage.get("completion_tokens_details")
    pdet = pdet if isinstance(pdet, dict) else {}
    cdet = cdet if isinstance(cdet, dict) else {}
    return Usage(prompt_tokens=num(hub_usage.get("prompt_tokens")),
                 completion_tokens=num(hub_usage.get("completion_tokens")),
                 cache_read_tokens=num(pdet.get("cached_tokens")),
                 cache_write_tokens=num(pdet.get("cache_write_tokens")),
                 reasoning_tokens=num(cdet.get("reasoning_tokens")), estimated=estimated)
