"""Fake task upstreams for the issue-7 tests (Midjourney-proxy, Suno, Kling, Jimeng,
OpenAI videos) and a notifyHook receiver, each an aiohttp app on loopback."""

from .base import FakeHook, FakeTask, FakeTaskServer, Seen
from .vendors import MP4, PNG, FakeJimeng, FakeKling, FakeMidjourney, FakeOpenAIVideos, FakeSuno

__all__ = ["MP4", "PNG", "FakeHook", "FakeJimeng", "FakeKling", "FakeMidjourney", "FakeOpenAIVideos", "FakeSuno",
           "FakeTask", "FakeTaskServer", "Seen"]
