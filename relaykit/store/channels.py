"""Repository for channels' runtime state (the channels themselves live in YAML).

One table holds two kinds of rows: ``<channel>`` rows for the operator's enable/disable,
and ``<channel>#<key fingerprint>`` rows for upstream keys found dead (401/403 or out of
credit).  Keys are only ever named by fingerprint here, never stored.
"""

from __future__ import annotations

from typing import Any

from .accounts import bump_changes
from .tables import Tables, now


def key_row_name(channel: str, fp: str) -> str:
    return f"{channel}#{fp}"


def set_channel_enabled(t: Tables, channel: str, enabled: bool, reason: str = "") -> None:
    t.ChannelState.insert(name=channel, enabled=enabled, reason=reason[:255], updated_at=now()).on_conflict(
        conflict_target=[t.ChannelState.name],
        update={t.ChannelState.enabled: enabled, t.ChannelState.reason: reason[:255],
                t.ChannelState.updated_at: now()}).execute()
    bump_changes(t)


def set_key_dead(t: Tables, channel: str, fp: str, reason: str) -> None:
    set_channel_enabled(t, key_row_name(channel, fp), False, reason)


def revive_keys(t: Tables, channel: str) -> int:
    n = t.ChannelState.delete().where(t.ChannelState.name.startswith(channel + "#")).execute()
    bump_changes(t)
    return int(n)


def states(t: Tables) -> dict[str, dict[str, Any]]:
    return {r.name: {"enabled": bool(r.enabled), "reason": r.reason, "updated_at": r.updated_at}
            for r in t.ChannelState.select()}


def disabled_sets(t: Tables) -> tuple[frozenset[str], dict[str, dict[str, str]]]:
    """(channels the operator disabled, {channel: {key fingerprint: reason}} for dead keys)."""
    channels: set[str] = set()
    keys: dict[str, dict[str, str]] = {}
    for r in t.ChannelState.select().where(t.ChannelState.enabled == False):  # noqa: E712
        if "#" in r.name:
            ch, fp = r.name.split("#", 1)
            keys.setdefault(ch, {})[fp] = r.reason
        else:
            channels.add(r.name)
    return frozenset(channels), keys
