"""Long-running generation tasks: Midjourney, Suno and video (issue 7).

    client submit -> route (model, group, price) -> hold + task row (one transaction)
      -> adapter.submit on a channel (the next channel on a connection error / 5xx / full queue)
      -> relaykit's own task id to the client
    poller: due tasks -> adapter.poll -> record progress -> on a terminal status settle
      (charge on success, release on failure or deadline) -> notifyHook
    client fetch -> the task row (never an upstream call)

One adapter per vendor API, in a registry keyed by channel type, as channel kinds are.
"""

from __future__ import annotations

from .base import TaskAdapter
from .jimeng import JimengAdapter
from .kling import KlingAdapter
from .midjourney import MidjourneyAdapter
from .mock import MockTaskAdapter
from .openai_videos import OpenAIVideosAdapter
from .suno import SunoAdapter

ADAPTERS: dict[str, TaskAdapter] = {
    "midjourney": MidjourneyAdapter(),
    "suno": SunoAdapter(),
    "kling": KlingAdapter(),
    "jimeng": JimengAdapter(),
    "openai": OpenAIVideosAdapter(),
    "mock": MockTaskAdapter(),
}


def adapter_for(channel_type: str, platform: str) -> TaskAdapter | None:
    adapter = ADAPTERS.get(channel_type)
    return adapter if adapter is not None and platform in adapter.platforms else None


__all__ = ["ADAPTERS", "TaskAdapter", "adapter_for"]
