"""Anthropic Messages requests ⇄ hub chat requests.

Place in the pipeline: ``request_to_hub`` turns an Anthropic client's request into the
hub request the relay routes; ``request_from_hub`` turns a hub request into the body
sent to an Anthropic upstream.  Both are re-exported by ``relaykit.dialects.anthropic``.

Dropped on purpose (cannot be carried across):

* from Anthropic clients: ``top_k``; ``service_tier``, ``container``, ``mcp_servers``
  and top-level ``cache_control``; server tools (``web_search_…``, ``bash_…``,
  ``text_editor_…``) and ``cache_control`` on tool definitions (``cache_control`` on
  system, text, image and tool-result blocks is kept); ``redacted_thinking``,
  ``search_result`` and server-tool blocks in history; the signature when one
  assistant turn holds several thinking blocks (their texts are joined, so no single
  signature matches them); the thinking budget itself (it becomes a
  ``reasoning_effort`` bucket); a final assistant message is kept as history, but
  non-Anthropic upstreams do not continue it as a prefill;
* toward Anthropic upstreams: thinking without a signature (Anthropic rejects it);
  ``response_format`` ``json_object`` (no plain JSON mode; ``json_schema`` becomes
  ``output_config.format``); ``seed``, penalties, ``logit_bias``, ``logprobs``,
  ``metadata``, ``store``; non-function tools; audio input; tool-call
  ``extra_content`` (Gemini signatures).  Thinking is switched off when the last
  assistant tool-use turn has no signed thinking or when tool use is forced, because
  Anthropic rejects both; ``temperature``/``top_p`` are dropped while thinking is on
  and ``temperature`` is clamped to 0..1 otherwise.  A conversation that does not
  start with a user turn gets a ``"..."`` user turn first; a tool result whose call is
  not in the previous assistant turn is sent as text.
"""

from __future__ import annotations

from typing import Any

from relaykit.dialects.hub import (
    EFFORT_BUDGETS,
    check_messages,
    data_url,
    dumps,
    effort_for_budget,
    function_tools,
    hub_tool_call,
    int_of,
    json_schema_of,
    max_tokens_of,
    obj_at,
    parse_arguments,
    parse_data_url,
    parts_of,
    safe_id,
    stop_list,
    text_of,
)

DEFAULT_MAX_TOKENS = 8192
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}


# =========================================================================== ingress


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content
    raise ValueError(f"{where}.content must be a string or a list of content blocks.")


def _with_cache(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _source_part(block: dict[str, Any], where: str) -> dict[str, Any] | None:
    """An ``image`` or ``document`` block → a chat content part."""
    src = block.get("source") or {}
    stype = src.get("type")
    if block.get("type") == "image":
        if stype == "base64":
            url = data_url(str(src.get("media_type") or "image/png"), str(src.get("data") or ""))
        elif stype == "url" and src.get("url"):
            url = str(src["url"])
        else:
            raise ValueError(f"{where}: image blocks must use a base64 or url source.")
        return _with_cache({"type": "image_url", "image_url": {"url": url}}, block)
    if stype == "base64":
        mime = str(src.get("media_type") or "application/pdf")
        file = {"filename": str(block.get("title") or "document.pdf"), "file_data": data_url(mime, str(src.get("data") or ""))}
        return _with_cache({"type": "file", "file": file}, block)
    if stype == "text":
        return _with_cache({"type": "text", "text": str(src.get("data") or "")}, block)
    if stype == "content":
        return {"type": "text", "text": text_of(src.get("content"))}
    raise ValueError(f"{where}: document blocks must use a base64 or text source.")


def _compact(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single plain text part becomes a string, everything else stays a part list."""
    if len(parts) == 1 and parts[0].get("type") == "text" and "cache_control" not in parts[0]:
        return str(parts[0]["text"])
    return parts


def _user_to_hub(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """One Anthropic user turn → tool messages first, then one user message."""
    tools: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        btype = block.get("type")
        if btype == "text":
            if block.get("text"):
                parts.append(_with_cache({"type": "text", "text": str(block["text"])}, block))
        elif btype in ("image", "document"):
            part = _source_part(block, where)
            if part is not None:
                parts.append(part)
        elif btype == "tool_result":
            inner = block.get("content")
            inner_blocks = _blocks(inner, where) if inner is not None else []
            text = "".join(str(b.get("text") or "") for b in inner_blocks if b.get("type") == "text")
            images = [_source_part(b, where) for b in inner_blocks if b.get("type") == "image"]
            if block.get("is_error"):
                text = f"Error: {text}" if text else "Error"
            marks = [b["cache_control"] for b in [block, *inner_blocks] if isinstance(b.get("cache_control"), dict)]
            content: str | list[dict[str, Any]] = [{"type": "text", "text": text, "cache_control": marks[0]}] \
                if marks else text
            tools.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id") or ""), "content": content})
            tool_images += [p for p in images if p is not None]
        # thinking, search_result and server-tool blocks in a user turn are dropped
    out = list(tools)
    parts = tool_images + parts
    if parts:
        out.append({"role": "user", "content": _compact(parts)})
    return out


def _assistant_to_hub(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    texts: list[dict[str, Any]] = []
    thinking: list[tuple[str, str]] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        btype = block.get("type")
        if btype == "text" and block.get("text"):
            texts.append(_with_cache({"type": "text", "text": str(block["text"])}, block))
        elif btype == "thinking":
            thinking.append((str(block.get("thinking") or ""), str(block.get("signature") or "")))
        elif btype == "tool_use":
            args = block.get("input") if isinstance(block.get("input"), dict) else {}
            calls.append(hub_tool_call(str(block.get("id") or f"call_{len(calls)}"), str(block.get("name") or ""), dumps(args)))
    if not texts and not calls and not thinking:
        return None
    msg: dict[str, Any] = {"role": "assistant"}
    if any("cache_control" in t for t in texts):
        msg["content"] = texts
    else:
        msg["content"] = "".join(t["text"] for t in texts) or (None if calls else "")
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        msg["reasoning_content"] = "".join(t for t, _ in thinking)
        if len(thinking) == 1 and thinking[0][1]:
            msg["reasoning_signature"] = thinking[0][1]
    return msg


def _system_to_hub(system: Any) -> str | list[dict[str, Any]]:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise ValueError("system must be a string or a list of text blocks.")
    parts = [_with_cache({"type": "text", "text": str(b.get("text") or "")}, b)
             for b in system if isinstance(b, dict) and b.get("type", "text") == "text"]
    if any("cache_control" in p for p in parts):
        return parts
    return "\n\n".join(p["text"] for p in parts if p["text"])


def _tool_choice_to_hub(choice: dict[str, Any], hub: dict[str, Any]) -> None:
    ctype = choice.get("type")
    if ctype == "auto":
        hub["tool_choice"] = "auto"
    elif ctype == "any":
        hub["tool_choice"] = "required"
    elif ctype == "none":
        hub["tool_choice"] = "none"
    elif ctype == "tool":
        if not choice.get("name"):
            raise ValueError("tool_choice of type 'tool' needs a name.")
        hub["tool_choice"] = {"type": "function", "function": {"name": str(choice["name"])}}
    else:
        raise ValueError("tool_choice.type must be one of auto, any, tool or none.")
    if choice.get("disable_parallel_tool_use"):
        hub["parallel_tool_calls"] = False


def request_to_hub(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """An Anthropic Messages request → hub chat request."""
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ValueError("messages must be a non-empty list.")
    messages: list[dict[str, Any]] = []
    if body.get("system"):
        system = _system_to_hub(body["system"])
        if system:
            messages.append({"role": "system", "content": system})
    for i, msg in enumerate(raw_messages):
        where = f"messages[{i}]"
        if isinstance(msg, dict) and msg.get("role") == "system":
            # Claude Code 2.1 sends mid-conversation system messages (beta
            # mid-conversation-tool-changes-2026-07-01); in the hub they stay where they are
            system = _system_to_hub(msg.get("content"))
            if system:
                messages.append({"role": "system", "content": system})
            continue
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise ValueError(f"{where}.role must be 'user', 'assistant' or 'system'.")
        blocks = _blocks(msg.get("content"), where)
        if msg["role"] == "user":
            messages.extend(_user_to_hub(blocks, where))
        elif (converted := _assistant_to_hub(blocks)) is not None:
            messages.append(converted)
    hub: dict[str, Any] = {"model": model, "messages": messages}
    if "stream" in body:
        hub["stream"] = bool(body["stream"])
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ValueError("max_tokens must be a positive integer.")
        hub["max_completion_tokens"] = max_tokens
    for key in ("temperature", "top_p"):
        if isinstance(body.get(key), (int, float)):
            hub[key] = body[key]
    if isinstance(body.get("stop_sequences"), list) and body["stop_sequences"]:
        hub["stop"] = [str(s) for s in body["stop_sequences"]]
    user_id = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if user_id:
        hub["user"] = str(user_id)
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise ValueError("tools must be a list.")
    hub_tools = []
    for tool in tools or []:
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            continue  # server tools run inside Anthropic; nothing else can run them
        if not tool.get("name"):
            raise ValueError("Every tool needs a name.")
        fn: dict[str, Any] = {"name": str(tool["name"])}
        if tool.get("description"):
            fn["description"] = str(tool["description"])
        fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        if isinstance(tool.get("strict"), bool):
            fn["strict"] = tool["strict"]
        hub_tools.append({"type": "function", "function": fn})
    if hub_tools:
        hub["tools"] = hub_tools
        if isinstance(body.get("tool_choice"), dict):
            _tool_choice_to_hub(body["tool_choice"], hub)
    thinking = obj_at(body, "thinking")
    output_config = obj_at(body, "output_config")
    if thinking.get("type") == "enabled":
        hub["reasoning_effort"] = effort_for_budget(int_of(thinking.get("budget_tokens")))
    elif thinking.get("type") != "disabled" and output_config.get("effort") in _EFFORTS:
        hub["reasoning_effort"] = _EFFORTS[output_config["effort"]]
    elif thinking.get("type") == "adaptive":
        hub["reasoning_effort"] = "medium"
    fmt = output_config.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema") if isinstance(fmt.get("schema"), dict) else {"type": "object"}
        hub["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    return hub


# =========================================================================== egress


def _image_block(url: str, part: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_data_url(url)
    if parsed is None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("Image URLs must be http(s) or base64 data URLs.")
        return _with_cache({"type": "image", "source": {"type": "url", "url": url}}, part)
    mime, data = parsed
    if mime not in IMAGE_TYPES:
        raise ValueError(f"Anthropic accepts JPEG, PNG, GIF and WebP images, not {mime}.")
    return _with_cache({"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}, part)


def _content_blocks(content: Any, *, strip_end: bool = False) -> list[dict[str, Any]]:
    """Chat content (string or parts) → Anthropic blocks, empty text dropped."""
    out: list[dict[str, Any]] = []
    for part in parts_of(content):
        ptype = part.get("type")
        if ptype in ("text", "refusal"):
            text = str(part.get("text") if ptype == "text" else part.get("refusal") or "")
            if text.strip():
                out.append(_with_cache({"type": "text", "text": text}, part))
        elif ptype == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            out.append(_image_block(str(url or ""), part))
        elif ptype == "file":
            file = part.get("file") or {}
            parsed = parse_data_url(str(file.get("file_data") or ""))
            if parsed is None:
                raise ValueError("Files sent to Anthropic must be base64 data (file_data); file ids cannot be relayed.")
            source = {"type": "base64", "media_type": parsed[0], "data": parsed[1]}
            out.append(_with_cache({"type": "document", "source": source}, part))
        elif ptype == "input_audio":
            raise ValueError("Anthropic models cannot take audio input.")
    if strip_end and out and out[-1]["type"] == "text":
        out[-1]["text"] = out[-1]["text"].rstrip()
    return out


def _system_from_hub(messages: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    parts = [p for m in messages if m.get("role") in ("system", "developer") for p in _content_blocks(m.get("content"))]
    texts = [p for p in parts if p["type"] == "text"]
    if not texts:
        return None
    if any("cache_control" in p for p in texts):
        return texts
    return "\n\n".join(p["text"] for p in texts)


def _turns_from_hub(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    last_tool_ids: set[str] = set()

    def push(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    conversation = [m for m in messages if m.get("role") not in ("system", "developer")]
    for pos, msg in enumerate(conversation):
        role = msg.get("role")
        if role == "assistant":
            blocks: list[dict[str, Any]] = []
            signature = msg.get("reasoning_signature")
            if msg.get("reasoning_content") and isinstance(signature, str) and signature:
                blocks.append({"type": "thinking", "thinking": str(msg["reasoning_content"]), "signature": signature})
            blocks += _content_blocks(msg.get("content"), strip_end=pos == len(conversation) - 1)
            ids: set[str] = set()
            for i, call in enumerate(msg.get("tool_calls") or []):
                fn = call.get("function") or {}
                call_id = safe_id(str(call.get("id") or ""), f"toolu_{pos}_{i}")
                ids.add(call_id)
                blocks.append({"type": "tool_use", "id": call_id, "name": str(fn.get("name") or ""),
                               "input": parse_arguments(fn.get("arguments"))})
            if blocks and turns and turns[-1]["role"] == "assistant":
                last_tool_ids |= ids
            elif blocks:
                last_tool_ids = ids
            push("assistant", blocks)
        elif role == "tool":
            call_id = safe_id(str(msg.get("tool_call_id") or ""), "")
            text = text_of(msg.get("content"))
            if call_id and call_id in last_tool_ids:
                result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": text}
                marks = [p["cache_control"] for p in parts_of(msg.get("content")) if isinstance(p.get("cache_control"), dict)]
                if marks:
                    result["cache_control"] = marks[-1]
                if turns and turns[-1]["role"] == "user":
                    existing = turns[-1]["content"]
                    at = sum(1 for b in existing if b.get("type") == "tool_result")
                    existing.insert(at, result)
                else:
                    push("user", [result])
            else:  # a result whose call is not in the previous assistant turn
                push("user", [{"type": "text", "text": f"Tool result ({msg.get('tool_call_id')}): {text or '(empty)'}"}])
        elif role in ("user", "function"):
            push("user", _content_blocks(msg.get("content")))
        else:
            raise ValueError(f"Unknown message role {role!r}.")
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": "..."}]})
    return turns


def _tool_choice_from_hub(choice: Any, tool_names: set[str]) -> dict[str, Any] | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name in tool_names:
            return {"type": "tool", "name": name}
        return {"type": "any"} if choice.get("type") == "allowed_tools" and choice.get("mode") == "required" else {"type": "auto"}
    return None


def request_from_hub(hub: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A hub chat request → an Anthropic Messages request body."""
    messages = check_messages(hub)
    body: dict[str, Any] = {"model": model}
    system = _system_from_hub(messages)
    if system:
        body["system"] = system
    turns = _turns_from_hub(messages)
    body["messages"] = turns
    tools = []
    for fn in function_tools(hub):
        params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {"type": "object", "properties": {}}
        tool: dict[str, Any] = {"name": str(fn["name"]), "input_schema": params}
        if fn.get("description"):
            tool["description"] = str(fn["description"])
        tools.append(tool)
    choice = None
    if tools:
        body["tools"] = tools
        choice = _tool_choice_from_hub(hub.get("tool_choice"), {t["name"] for t in tools})
        if hub.get("parallel_tool_calls") is False and (choice is None or choice["type"] != "none"):
            choice = dict(choice or {"type": "auto"}, disable_parallel_tool_use=True)
        if choice is not None:
            body["tool_choice"] = choice
    explicit_max = max_tokens_of(hub)
    max_tokens = explicit_max or DEFAULT_MAX_TOKENS
    budget = EFFORT_BUDGETS.get(str(hub.get("reasoning_effort")))
    if budget is not None:
        last_assistant = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
        unsigned_tool_turn = last_assistant is not None and any(b["type"] == "tool_use" for b in last_assistant["content"]) \
            and last_assistant["content"][0]["type"] != "thinking"
        if unsigned_tool_turn or (choice is not None and choice["type"] in ("any", "tool")):
            budget = None
        elif explicit_max is None:
            max_tokens = max(DEFAULT_MAX_TOKENS, budget + 4096)
        elif budget >= max_tokens:
            budget = max_tokens // 2 if max_tokens // 2 >= 1024 else None
    body["max_tokens"] = max_tokens
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if isinstance(hub.get("top_p"), (int, float)) and hub["top_p"] >= 0.95:
            body["top_p"] = min(float(hub["top_p"]), 1.0)
    else:
        if isinstance(hub.get("temperature"), (int, float)):
            body["temperature"] = min(max(float(hub["temperature"]), 0.0), 1.0)
        if isinstance(hub.get("top_p"), (int, float)):
            body["top_p"] = hub["top_p"]
    stops = stop_list(hub)
    if stops:
        body["stop_sequences"] = stops
    if hub.get("user"):
        body["metadata"] = {"user_id": str(hub["user"])}
    fmt = json_schema_of(hub.get("response_format"))
    if fmt is not None and fmt[0] == "json_schema":
        body["output_config"] = {"format": {"type": "json_schema", "schema": fmt[1]}}
    if hub.get("stream"):
        body["stream"] = True
    return body
