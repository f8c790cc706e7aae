"""Fake OpenAI upstream with the Responses API: ``POST /v1/responses``.

Subclass of :class:`~tests.fakes.openai_chat.FakeOpenAIChat`, so it also
serves ``/v1/chat/completions`` and ``/v1/models`` like the real OpenAI.

Wire format per PROTOCOLS.md §2.2-2.3: ``response`` objects, SSE with
``event:`` + ``data:`` lines, increasing ``sequence_number``, no ``[DONE]``;
``response.created`` first and ``response.completed`` (or
``response.incomplete`` when ``max_output_tokens`` cut the text) last.

Reasoning: a ``reasoning`` request field (effort not ``"none"``) adds a
``reasoning`` output item and bills :data:`~tests.fakes.base.REASONING_TEXT`
as ``reasoning_tokens``; ``reasoning.summary`` makes the text visible as a
``summary_text``; ``include: ["reasoning.encrypted_content"]`` adds
``encrypted_content``.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from .base import Answer, Recorded, Reply, flatten_text, sse_frame
from .openai_chat import FakeOpenAIChat

__all__ = ["FakeOpenAIResponses"]


def _is_message(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and "role" in item


class FakeOpenAIResponses(FakeOpenAIChat):
    """OpenAI Responses API fake (plus everything FakeOpenAIChat serves)."""

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        super().setup_routes(router)
        router.add_post("/v1/responses", self._responses)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = self.record_of(request).json
        stream = isinstance(body, dict) and bool(body.get("stream"))
        return await self.serve(request, self._build_responses, stream=stream)

    @staticmethod
    def responses_usage(usage: dict[str, int]) -> dict[str, Any]:
        """Normalised usage -> Responses API ``usage`` object."""
        return {
            "input_tokens": usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": usage["cache_read_tokens"]},
            "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": usage["reasoning_tokens"]},
            "total_tokens": usage["total_tokens"],
        }

    def _plan_responses(self, record: Recorded, body: dict[str, Any]) -> tuple[Answer, dict[str, Any] | None]:
        raw = body.get("input")
        items: list[dict[str, Any]]
        if isinstance(raw, str):
            items = [{"role": "user", "content": raw}]
        else:
            items = [i for i in raw or [] if isinstance(i, dict)]
        texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
        for item in items:
            if _is_message(item):
                texts.append(flatten_text(item.get("content")))
            elif item.get("type") == "function_call_output":
                texts.append(flatten_text(item.get("output")))
        last = items[-1] if items else {}
        users = [i for i in items if _is_message(i) and i.get("role") == "user"]
        tool_result = flatten_text(last.get("output")) if last.get("type") == "function_call_output" else None
        last_role = str(last.get("role", "")) if _is_message(last) else str(last.get("type", ""))
        reasoning = body.get("reasoning")
        if not isinstance(reasoning, dict) or reasoning.get("effort") == "none":
            reasoning = None
        limit = body.get("max_output_tokens")
        answer = self.plan_answer(
            record,
            prompt_texts=texts,
            last_role=last_role,
            last_user_text=flatten_text(users[-1].get("content")) if users else "",
            tool_result=tool_result,
            has_tools=any(isinstance(t, dict) and t.get("type") == "function" for t in body.get("tools") or []),
            reasoning=bool(reasoning and reasoning.get("summary")),
            hidden_reasoning=reasoning is not None,
            limit=limit if isinstance(limit, int) else None,
        )
        return answer, reasoning

    def _build_responses(self, request: web.Request, record: Recorded, with_usage: bool) -> Reply | web.Response:
        body = record.json
        if not isinstance(body, dict):
            return self.bad_request("We could not parse the JSON body of your request.")
        if not body.get("model"):
            return self.bad_request("Missing required parameter: 'model'.", "model")
        if "input" not in body or not isinstance(body["input"], (str, list)):
            return self.bad_request("Missing required parameter: 'input'.", "input")
        answer, reasoning = self._plan_responses(record, body)
        resp_id = self.next_id("resp_fake")
        suffix = resp_id[-6:]
        include = body.get("include") or []
        usage = self.responses_usage(answer.usage) if with_usage else None
        self.last_usage_wire = usage

        # Final output items, in order.
        items: list[dict[str, Any]] = []
        if reasoning is not None:
            item: dict[str, Any] = {"type": "reasoning", "id": f"rs_{suffix}", "summary": []}
            if answer.reasoning is not None:
                item["summary"] = [{"type": "summary_text", "text": answer.reasoning}]
            if "reasoning.encrypted_content" in include:
                item["encrypted_content"] = self.signature_for(f"{resp_id}:{answer.reasoning or ''}")
            items.append(item)
        if answer.kind == "tool_call":
            items.append(
                {
                    "type": "function_call",
                    "id": f"fc_{suffix}",
                    "call_id": f"call_{suffix}",
                    "name": answer.tool_name,
                    "arguments": answer.tool_args_json,
                    "status": "completed",
                }
            )
        else:
            items.append(
                {
                    "type": "message",
                    "id": f"msg_{suffix}",
                    "status": "incomplete" if answer.truncated else "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": answer.text, "annotations": [], "logprobs": []}],
                }
            )
        status = "incomplete" if answer.truncated else "completed"
        final = self._response_object(body, resp_id, status, items, usage)
        if answer.truncated:
            final["incomplete_details"] = {"reason": "max_output_tokens"}
        headers = {"x-request-id": f"req_{resp_id}"}
        if not body.get("stream"):
            return Reply(json_body=final, headers=headers)

        events: list[tuple[str, dict[str, Any]]] = []

        def emit(kind: str, **payload: Any) -> None:
            events.append((kind, {"type": kind, **payload}))

        emit("response.created", response=self._response_object(body, resp_id, "in_progress", [], None))
        emit("response.in_progress", response=self._response_object(body, resp_id, "in_progress", [], None))
        for index, item in enumerate(items):
            item_id = item["id"]
            if item["type"] == "reasoning":
                emit("response.output_item.added", output_index=index, item={"type": "reasoning", "id": item_id, "summary": []})
                if answer.reasoning is not None:
                    part = {"type": "summary_text", "text": ""}
                    common = {"item_id": item_id, "output_index": index, "summary_index": 0}
                    emit("response.reasoning_summary_part.added", **common, part=part)
                    for delta in answer.reasoning_deltas:
                        emit("response.reasoning_summary_text.delta", **common, delta=delta)
                    emit("response.reasoning_summary_text.done", **common, text=answer.reasoning)
                    emit("response.reasoning_summary_part.done", **common, part={**part, "text": answer.reasoning})
            elif item["type"] == "message":
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item={"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []},
                )
                common = {"item_id": item_id, "output_index": index, "content_index": 0}
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                emit("response.content_part.added", **common, part=part)
                for delta in answer.deltas:
                    emit("response.output_text.delta", **common, delta=delta, logprobs=[])
                emit("response.output_text.done", **common, text=answer.text, logprobs=[])
                emit("response.content_part.done", **common, part={**part, "text": answer.text})
            else:
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "arguments": "", "status": "in_progress"},
                )
                for fragment in answer.tool_args_fragments:
                    emit("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=fragment)
                emit(
                    "response.function_call_arguments.done",
                    item_id=item_id,
                    output_index=index,
                    name=answer.tool_name,
                    arguments=answer.tool_args_json,
                )
            emit("response.output_item.done", output_index=index, item=copy.deepcopy(item))
        emit("response.incomplete" if answer.truncated else "response.completed", response=final)

        frames = []
        for seq, (kind, data) in enumerate(events):
            data["sequence_number"] = seq
            frames.append(sse_frame(data, kind))
        failed_at = min(3, len(frames) - 1)
        failed = self._response_object(body, resp_id, "failed", [], None)
        failed["error"] = {"code": "server_error", "message": "The model failed to generate a response."}
        error_frame = sse_frame(
            {"type": "response.failed", "response": failed, "sequence_number": failed_at}, "response.failed"
        )
        return Reply(
            frames=frames,
            n_tail=1,
            terminator=False,
            error_frame=error_frame,
            garbage_frames=[b'event: response.created\ndata: {"type": "response.created", "respo\n\n'],
            headers=headers,
        )

    def _response_object(
        self,
        body: dict[str, Any],
        resp_id: str,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None,
    ) -> dict[str, Any]:
        tools = []
        for tool in body.get("tools") or []:
            if isinstance(tool, dict):
                tools.append({"strict": True, "description": None, **tool})
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        return {
            "id": resp_id,
            "object": "response",
            "created_at": self.now(),
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body.get("model"),
            "output": copy.deepcopy(output),
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": tools,
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": copy.deepcopy(usage),
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }
