"""OpenAI Responses API ⇄ hub translation (requests, responses, usage, errors).

Place in the pipeline:

* ingress — a client speaking ``POST /v1/responses``: ``request_to_hub`` → relay →
  ``response_from_hub`` / ``StreamFromHub``;
* egress — an upstream that only speaks Responses: ``request_from_hub`` → upstream →
  ``response_to_hub`` / ``StreamToHub``.

Streams, usage and errors live in ``openai_responses_stream``; every public name is
importable from this module.

The relay is stateless, so ``previous_response_id``, ``conversation``,
``item_reference`` items and ``background`` mode are rejected with a clear error
instead of being silently ignored.

Dropped on purpose (cannot be carried across):

* from Responses clients: ``store`` (nothing is stored; responses say
  ``store: false``), ``include`` (no ``reasoning.encrypted_content`` or logprobs can be
  produced), ``encrypted_content`` of ``reasoning`` input items (only their summary /
  text is kept, as the next assistant message's ``reasoning_content``), ``metadata``,
  ``truncation``, ``top_logprobs``, ``reasoning.summary``, ``prompt`` templates;
  non-function tools (web search, file search, computer use, code interpreter, MCP,
  image generation, custom tools) and their call items in ``input``; images inside a
  ``function_call_output``;
* toward Responses upstreams: ``stop``, ``seed``, penalties, ``logit_bias``,
  ``logprobs``, ``n`` > 1, assistant ``reasoning_content`` (a reasoning input item
  needs the upstream's own id and encrypted content), ``cache_control`` and
  signatures, audio input; the upstream is asked not to ``store`` the response;
* from Responses upstreams: built-in tool output items, annotations, logprobs and
  ``encrypted_content``.
"""

from __future__ import annotations

from typing import Any

from relaykit.dialects.hub import (
    UpstreamStreamError,
    check_messages,
    function_tools,
    hub_response,
    hub_tool_call,
    max_tokens_of,
    obj_at,
    parts_of,
    text_of,
)
from relaykit.dialects.openai_responses_stream import (
    StreamFromHub,
    StreamToHub,
    error_body,
    item_ids,
    response_object,
    status_for_finish,
    usage_from_body,
    usage_to_responses,
)

__all__ = [
    "StreamFromHub",
    "StreamToHub",
    "count_tokens_response",
    "error_body",
    "request_from_hub",
    "request_to_hub",
    "response_from_hub",
    "response_to_hub",
    "usage_from_body",
]

def count_tokens_response(n: int) -> dict[str, Any]:
    """Body for ``POST /v1/responses/input_tokens``."""
    return {"object": "response.input_tokens", "input_tokens": n}


_STATELESS = "needs server-side conversation state, which this relay does not keep; send the full input instead."


# =========================================================================== ingress


def _user_parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValueError(f"{where}.content must be a string or a list of content parts.")
    parts: list[dict[str, Any]] = []
    for part in content:
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif ptype == "input_image":
            if not part.get("image_url"):
                raise ValueError(f"{where}: input_image parts need an image_url (file ids cannot be relayed).")
            image: dict[str, Any] = {"url": str(part["image_url"])}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif ptype == "input_file":
            file: dict[str, Any] = {}
            if part.get("file_data"):
                file["file_data"] = part["file_data"]
                file["filename"] = str(part.get("filename") or "file")
            elif part.get("file_id"):
                file["file_id"] = part["file_id"]
            else:
                raise ValueError(f"{where}: input_file parts need file_data or file_id (file URLs cannot be relayed).")
            parts.append({"type": "file", "file": file})
        elif ptype is None:
            raise ValueError(f"{where}: every content part needs a type.")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _reasoning_text(item: dict[str, Any]) -> str:
    texts = [str(p.get("text") or "") for key in ("summary", "content") for p in item.get(key) or [] if isinstance(p, dict)]
    return "\n\n".join(t for t in texts if t)


def _input_to_messages(items: list[Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    reasoning: list[str] = []

    def assistant() -> dict[str, Any]:
        """The assistant message function calls join (a new one unless the last is)."""
        if messages and messages[-1]["role"] == "assistant" and not reasoning:
            return messages[-1]
        msg: dict[str, Any] = {"role": "assistant", "content": None}
        if reasoning:
            msg["reasoning_content"] = "\n\n".join(reasoning)
            reasoning.clear()
        messages.append(msg)
        return msg

    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object.")
        itype = item.get("type") or ("message" if "role" in item else None)
        if itype == "message":
            role = item.get("role")
            if role == "assistant":
                content = item.get("content")
                refusal = "".join(str(p.get("refusal") or "") for p in content if isinstance(p, dict)) \
                    if isinstance(content, list) else ""
                text = text_of(content) if isinstance(content, (str, list)) else ""
                msg: dict[str, Any] = {"role": "assistant", "content": text or refusal}
                if reasoning:
                    msg["reasoning_content"] = "\n\n".join(reasoning)
                    reasoning.clear()
                messages.append(msg)
            elif role in ("user", "system", "developer"):
                messages.append({"role": role, "content": _user_parts(item.get("content"), where)})
            else:
                raise ValueError(f"{where}.role must be user, assistant, system or developer.")
        elif itype == "function_call":
            if not item.get("call_id") or not item.get("name"):
                raise ValueError(f"{where}: function_call items need call_id and name.")
            calls: list[dict[str, Any]] = assistant().setdefault("tool_calls", [])
            calls.append(
                hub_tool_call(str(item["call_id"]), str(item["name"]), str(item.get("arguments") or "")))
        elif itype == "function_call_output":
            if not item.get("call_id"):
                raise ValueError(f"{where}: function_call_output items need a call_id.")
            output = item.get("output")
            text = output if isinstance(output, str) else text_of(output) if isinstance(output, list) else ""
            messages.append({"role": "tool", "tool_call_id": str(item["call_id"]), "content": text})
        elif itype == "reasoning":
            if text := _reasoning_text(item):
                reasoning.append(text)
        elif itype == "item_reference":
            raise ValueError(f"{where}: item_reference {_STATELESS}")
        # built-in tool calls and their outputs are dropped
    return messages


def _format_to_hub(fmt: Any) -> dict[str, Any] | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        spec.setdefault("name", "output")
        return {"type": "json_schema", "json_schema": spec}
    return None


def request_to_hub(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A Responses request → hub chat request."""
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    for key in ("previous_response_id", "conversation"):
        if body.get(key):
            raise ValueError(f"{key} {_STATELESS}")
    if body.get("background"):
        raise ValueError("Background responses are not supported by this relay.")
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions is not None and not isinstance(instructions, str):
        raise ValueError("instructions must be a string.")
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
    elif isinstance(raw, list):
        messages += _input_to_messages(raw)
    else:
        raise ValueError("input must be a string or a list of input items.")
    if not any(m["role"] not in ("system", "developer") for m in messages):
        raise ValueError("input must contain at least one message.")
    hub: dict[str, Any] = {"model": model, "messages": messages}
    if "stream" in body:
        hub["stream"] = bool(body["stream"])
    if isinstance(body.get("max_output_tokens"), int):
        hub["max_completion_tokens"] = body["max_output_tokens"]
    for key in ("temperature", "top_p", "parallel_tool_calls", "user", "service_tier", "prompt_cache_key",
                "safety_identifier"):
        if body.get(key) is not None:
            hub[key] = body[key]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        hub["reasoning_effort"] = reasoning["effort"]
    text_cfg = obj_at(body, "text")
    if fmt := _format_to_hub(text_cfg.get("format")):
        hub["response_format"] = fmt
    if text_cfg.get("verbosity"):
        hub["verbosity"] = text_cfg["verbosity"]
    tools = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            if not tool.get("name"):
                raise ValueError("Every function tool needs a name.")
            fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
            fn.setdefault("parameters", {"type": "object", "properties": {}})
            tools.append({"type": "function", "function": fn})
    if tools:
        hub["tools"] = tools
        choice = body.get("tool_choice")
        if choice in ("auto", "none", "required"):
            hub["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
            hub["tool_choice"] = {"type": "function", "function": {"name": str(choice["name"])}}
        elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            hub["tool_choice"] = "required" if choice.get("mode") == "required" else "auto"
    return hub


def _output_items(msg: dict[str, Any], stem: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if msg.get("reasoning_content"):
        items.append({"type": "reasoning", "id": f"rs_{stem}_{len(items)}",
                      "summary": [{"type": "summary_text", "text": str(msg["reasoning_content"])}]})
    text = text_of(msg.get("content"))
    if text or msg.get("refusal") or not msg.get("tool_calls"):
        part = {"type": "output_text", "text": text, "annotations": []} if text or not msg.get("refusal") \
            else {"type": "refusal", "refusal": str(msg["refusal"])}
        items.append({"type": "message", "id": f"msg_{stem}_{len(items)}", "status": "completed", "role": "assistant",
                      "content": [part]})
    for i, call in enumerate(msg.get("tool_calls") or []):
        fn = call.get("function") or {}
        items.append({"type": "function_call", "id": f"fc_{stem}_{len(items)}",
                      "call_id": str(call.get("id") or f"call_{stem}_{i}"), "name": str(fn.get("name") or ""),
                      "arguments": str(fn.get("arguments") or ""), "status": "completed"})
    return items


def response_from_hub(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A hub chat response → a Responses ``response`` object."""
    response_id = str(resp.get("id") or "resp_relay")
    choices = resp.get("choices") or []
    choice = choices[0] if choices else {}
    output = _output_items(choice.get("message") or {}, item_ids(response_id))
    status, incomplete = status_for_finish(choice.get("finish_reason"))
    return response_object(response_id, int(resp.get("created") or 0), model, status, output,
                           usage_to_responses(resp.get("usage")), incomplete=incomplete)


# =========================================================================== egress


def _input_parts(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in parts_of(content):
        ptype = part.get("type")
        if ptype == "text":
            parts.append({"type": "input_text", "text": str(part.get("text") or "")})
        elif ptype == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            out: dict[str, Any] = {"type": "input_image", "image_url": str(url or "")}
            out["detail"] = (image.get("detail") if isinstance(image, dict) else None) or "auto"
            parts.append(out)
        elif ptype == "file":
            file = part.get("file") or {}
            entry = {"type": "input_file", **{k: file[k] for k in ("file_data", "file_id", "filename") if file.get(k)}}
            parts.append(entry)
        elif ptype == "input_audio":
            raise ValueError("The Responses API upstream cannot take audio input.")
    return parts


def request_from_hub(hub: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A hub chat request → a Responses request body (``store: false``)."""
    messages = check_messages(hub)
    items: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer", "user"):
            items.append({"role": role, "content": _input_parts(msg.get("content"))})
        elif role == "assistant":
            said = text_of(msg.get("content")) or str(msg.get("refusal") or "")
            if said:
                items.append({"role": "assistant", "content": said})
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                items.append({"type": "function_call", "call_id": str(call.get("id") or ""),
                              "name": str(fn.get("name") or ""), "arguments": str(fn.get("arguments") or "")})
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": str(msg.get("tool_call_id") or ""),
                          "output": text_of(msg.get("content"))})
        else:
            raise ValueError(f"Unknown message role {role!r}.")
    body: dict[str, Any] = {"model": model, "input": items, "store": False}
    tools = []
    for fn in function_tools(hub):
        tool: dict[str, Any] = {"type": "function", "name": str(fn["name"]),
                                "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
                                "strict": bool(fn.get("strict", False))}
        if fn.get("description"):
            tool["description"] = str(fn["description"])
        tools.append(tool)
    if tools:
        body["tools"] = tools
        choice = hub.get("tool_choice")
        if choice in ("auto", "none", "required"):
            body["tool_choice"] = choice
        elif isinstance(choice, dict) and (name := (choice.get("function") or {}).get("name")):
            body["tool_choice"] = {"type": "function", "name": str(name)}
    if isinstance(hub.get("parallel_tool_calls"), bool):
        body["parallel_tool_calls"] = hub["parallel_tool_calls"]
    if (max_tokens := max_tokens_of(hub)) is not None:
        body["max_output_tokens"] = max_tokens
    for key in ("temperature", "top_p", "user", "service_tier", "prompt_cache_key", "safety_identifier"):
        if hub.get(key) is not None:
            body[key] = hub[key]
    if isinstance(hub.get("reasoning_effort"), str):
        body["reasoning"] = {"effort": hub["reasoning_effort"]}
    text: dict[str, Any] = {}
    rf = hub.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_object":
        text["format"] = {"type": "json_object"}
    elif isinstance(rf, dict) and rf.get("type") == "json_schema":
        spec = rf.get("json_schema") or {}
        text["format"] = {"type": "json_schema", "name": str(spec.get("name") or "output"),
                          "schema": spec.get("schema") or {"type": "object"},
                          **{k: spec[k] for k in ("strict", "description") if k in spec}}
    if hub.get("verbosity"):
        text["verbosity"] = hub["verbosity"]
    if text:
        body["text"] = text
    if hub.get("stream"):
        body["stream"] = True
    return body


def response_to_hub(body: dict[str, Any], *, model: str, response_id: str, created: int) -> dict[str, Any]:
    """A Responses ``response`` object → a hub chat response."""
    if body.get("status") == "failed" or isinstance(body.get("error"), dict):
        err = body.get("error") or {}
        raise UpstreamStreamError(str(err.get("message") or "The upstream response failed."))
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in body.get("output") or []:
        itype = item.get("type") if isinstance(item, dict) else None
        if itype == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    texts.append(str(part.get("text") or ""))
                elif part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal") or ""))
        elif itype == "function_call":
            calls.append(hub_tool_call(str(item.get("call_id") or item.get("id") or ""), str(item.get("name") or ""),
                                       str(item.get("arguments") or "")))
        elif itype == "reasoning" and (text := _reasoning_text(item)):
            reasoning.append(text)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or (None if calls or refusals else "")}
    if refusals:
        message["refusal"] = "".join(refusals)
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    reason = (body.get("incomplete_details") or {}).get("reason")
    if body.get("status") == "incomplete" and reason == "content_filter":
        finish = "content_filter"
    elif body.get("status") == "incomplete":
        finish = "length"
    else:
        finish = "tool_calls" if calls else "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    usage = usage_from_body(body["usage"]) if isinstance(body.get("usage"), dict) else usage_from_body({})
    return hub_response(response_id, created, model, [choice], usage)
