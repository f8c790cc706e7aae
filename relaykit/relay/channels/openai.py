"""OpenAI and OpenAI-compatible upstreams (openai, openai-compatible, deepseek) and Azure.

An ``openai`` channel speaks Chat Completions and Responses: a Responses client passes
through to ``/v1/responses``, every other client goes through Chat Completions, unless
the channel says ``api: responses`` (an upstream that only offers Responses), in which
case every client is served through Responses.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from ...domain import Channel
from ..upstream import Reply, UpstreamPool
from . import ops
from .base import UpstreamRequest, join_url, prefer

PATHS = {"openai_chat": "/v1/chat/completions", "openai_responses": "/v1/responses"}
AZURE_API_VERSION = "2024-10-21"


def _headers(req: UpstreamRequest, auth: dict[str, str]) -> dict[str, str]:
    h = {"Content-Type": "application/json", "Accept": "text/event-stream" if req.stream else "application/json"}
    h.update(req.headers)
    h.update(auth)
    return h


class OpenAIChannel:
    dialects = ("openai_chat", "openai_responses")

    def __init__(self, *, responses: bool = True) -> None:
        if not responses:
            self.dialects = ("openai_chat",)

    def dialect_for(self, channel: Channel, client_dialect: str) -> str:
        if channel.api == "responses" and "openai_responses" in self.dialects:
            return "openai_responses"
        return prefer(self.dialects, client_dialect)

    async def open(self, pool: UpstreamPool, channel: Channel, key: str, req: UpstreamRequest) -> Reply:
        url = join_url(channel.base_url, PATHS[req.dialect])
        return await pool.post(url, headers=_headers(req, {"Authorization": f"Bearer {key}"}), body=req.body,
                               timeouts=channel.timeouts)


class AzureChannel:
    """Azure OpenAI: the deployment is the (mapped) model name; the key goes in ``api-key``."""

    dialects = ("openai_chat",)

    def dialect_for(self, channel: Channel, client_dialect: str) -> str:
        return "openai_chat"

    async def open(self, pool: UpstreamPool, channel: Channel, key: str, req: UpstreamRequest) -> Reply:
        version = channel.api_version or AZURE_API_VERSION
        url = (f"{channel.base_url.rstrip('/')}/openai/deployments/{quote(req.model, safe='')}/chat/completions?"
               + urlencode({"api-version": version}))
        return await pool.post(url, headers=_headers(req, {"api-key": key}), body=req.body, timeouts=channel.timeouts)


# --------------------------------------------------------------------------- non-chat operations

OP_PATHS = {
    "embeddings": "/v1/embeddings", "rerank": "/v1/rerank", "images.generations": "/v1/images/generations",
    "images.edits": "/v1/images/edits", "audio.transcriptions": "/v1/audio/transcriptions",
    "audio.translations": "/v1/audio/translations", "audio.speech": "/v1/audio/speech",
}
REALTIME_PATH = "/v1/realtime"


class OpenAIOps:
    """Embeddings, images, audio and realtime on OpenAI-shaped upstreams.

    ``openai`` speaks every format OpenAI documents (base64 embeddings included).
    ``openai-compatible`` servers (vLLM, LocalAI, SiliconFlow, ...) get float embeddings
    (the relay encodes base64 itself) and rerank in the Jina shape most of them serve.
    """

    def __init__(self, *, compatible: bool = False) -> None:
        self.compatible = compatible

    def wire(self, op: str) -> str | None:
        if op == "embeddings":
            return "openai-compatible" if self.compatible else "openai"
        if op == "rerank":
            return "jina" if self.compatible else None
        if op in OP_PATHS or op == "realtime":
            return "openai"
        return None

    async def open_op(self, pool: UpstreamPool, channel: Channel, key: str, req: ops.OpRequest) -> Reply:
        return await ops.post_path(pool, channel, OP_PATHS[req.op], key, req)

    def realtime_target(self, channel: Channel, key: str, model: str) -> tuple[str, dict[str, str]]:
        url = ops.ws_url(join_url(channel.base_url, REALTIME_PATH)) + "?" + urlencode({"model": model})
        return url, {"Authorization": f"Bearer {key}"}
