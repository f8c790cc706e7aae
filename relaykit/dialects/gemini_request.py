"""Gemini generateContent requests ⇄ hub chat requests.

Place in the pipeline: ``request_to_hub`` turns a Gemini client's request (model from
the URL, no ``stream`` key: the caller decides it) into the hub request;
``request_from_hub`` turns a hub request into the body for a Gemini upstream (the
model goes in the URL).  Both are re-exported by ``relaykit.dialects.gemini``.
lowerCamelCase and snake_case field names are both accepted on input.

Dropped on purpose (cannot be carried across):

* from Gemini clients: ``safetySettings``, ``cachedContent``, ``topK``,
  ``responseModalities``, ``speechConfig``, ``imageConfig``, ``mediaResolution``,
  ``includeThoughts``, ``responseLogprobs``; non-function tools (``googleSearch``,
  ``codeExecution``, ``urlContext``); thought parts and ``thoughtSignature`` on text
  parts in history (a ``thoughtSignature`` on a ``functionCall`` part is kept in the
  hub tool call's ``extra_content`` and replayed only to a Gemini upstream);
  ``fileData`` other than images; model-turn inline data;
* toward Gemini upstreams: ``reasoning_content`` in history (Gemini takes thoughts
  back only as signatures) and Anthropic thinking signatures; ``cache_control``;
  ``logit_bias``, ``logprobs``, ``user``, ``metadata``, ``store``; tool-call ids
  (results are matched by name and order); stop sequences beyond the fifth;
  JSON-Schema keywords Gemini's ``parameters`` subset rejects (schemas that need
  ``$ref`` or type unions go as ``parametersJsonSchema`` / ``responseJsonSchema``
  instead).  A tool call without a stored thought signature gets Google's documented
  placeholder on Gemini 3+ models.  http(s) image URLs are sent as
  ``fileData.fileUri`` (this module never downloads): the caller should inline them
  if the upstream cannot fetch them.
"""

from __future__ import annotations

from typing import Any

from relaykit.dialects.gemini_stream import (
    g,
)
from relaykit.dialects.hub import (
    GEMINI_DUMMY_SIGNATURE,
    check_messages,
    data_url,
    dumps,
    effort_for_budget,
    function_tools,
    gemini_signature_of,
    hub_tool_call,
    json_schema_of,
    max_tokens_of,
    parse_arguments,
    parse_data_url,
    parts_of,
    stop_list,
    system_text,
    text_of,
)

GEMINI_BUDGETS: dict[str, int] = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576, "max": 24576}
_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
_SCHEMA_KEYS = frozenset({
    "type", "format", "description", "nullable", "enum", "properties", "required", "items", "minItems",
    "maxItems", "minimum", "maximum", "anyOf", "minLength", "maxLength", "pattern", "title",
    "minProperties", "maxProperties",
})
_FORMATS = {"STRING": {"enum", "date-time"}, "INTEGER": {"int32", "int64"}, "NUMBER": {"float", "double"}}


# =========================================================================== schemas


def _schema_to_json(schema: Any) -> Any:
    """Gemini OpenAPI-subset schema (upper-case types, ``nullable``) → JSON Schema."""
    if isinstance(schema, list):
        return [_schema_to_json(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: _schema_to_json(v) for k, v in value.items()}
        elif key in ("items", "anyOf", "any_of"):
            out["anyOf" if key == "any_of" else key] = _schema_to_json(value)
        elif key not in ("nullable", "propertyOrdering", "property_ordering"):
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _schema_to_gemini(schema: Any) -> dict[str, Any] | None:
    """JSON Schema → Gemini's ``parameters`` subset, or None when it needs real JSON
    Schema (``$ref``/``$defs``, type unions) and must go as ``parametersJsonSchema``."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema or "$defs" in schema or "definitions" in schema:
        return None
    out: dict[str, Any] = {}
    stype = schema.get("type")
    if isinstance(stype, list):
        kinds = [t for t in stype if t != "null"]
        if len(kinds) != 1:
            return None
        stype = kinds[0]
        out["nullable"] = True
    if isinstance(stype, str):
        out["type"] = stype.upper()
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS or key == "type":
            continue
        if key == "properties" and isinstance(value, dict):
            props = {}
            for name, sub in value.items():
                converted = _schema_to_gemini(sub)
                if converted is None:
                    return None
                props[name] = converted
            out["properties"] = props
        elif key in ("items",):
            converted = _schema_to_gemini(value)
            if converted is None:
                return None
            out[key] = converted
        elif key == "anyOf" and isinstance(value, list):
            subs = [_schema_to_gemini(v) for v in value]
            if any(s is None for s in subs):
                return None
            out["anyOf"] = subs
        elif key == "enum":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out["enum"] = value
        elif key == "format":
            if value in _FORMATS.get(out.get("type", ""), set()):
                out["format"] = value
        else:
            out[key] = value
    if "const" in schema and isinstance(schema["const"], str):
        out["enum"] = [schema["const"]]
    return out


# =========================================================================== ingress


def _inline_to_part(inline: dict[str, Any], where: str) -> dict[str, Any]:
    mime = str(g(inline, "mimeType") or "application/octet-stream")
    data = str(inline.get("data") or "")
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": data_url(mime, data)}}
    if mime in ("audio/wav", "audio/x-wav", "audio/mp3", "audio/mpeg"):
        return {"type": "input_audio", "input_audio": {"data": data, "format": "wav" if "wav" in mime else "mp3"}}
    if mime.startswith(("audio/", "video/")):
        raise ValueError(f"{where}: {mime} data cannot be relayed to this model.")
    return {"type": "file", "file": {"filename": "file", "file_data": data_url(mime, data)}}


def _response_text(response: Any) -> str:
    """A functionResponse ``response`` object → tool message text."""
    if isinstance(response, dict) and len(response) == 1:
        (key, value), = response.items()
        if key in ("result", "output", "content") and isinstance(value, str):
            return value
    return dumps(response if response is not None else {})


def _contents_to_hub(contents: list[Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (call id, name) of calls not answered yet
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            raise ValueError(f"{where} must be an object with a list of parts.")
        role = content.get("role") or "user"
        if role not in ("user", "model", "function", "tool"):
            raise ValueError(f"{where}.role must be 'user' or 'model'.")
        parts = [p for p in content["parts"] if isinstance(p, dict)]
        if role == "model":
            texts: list[str] = []
            calls: list[dict[str, Any]] = []
            for j, part in enumerate(parts):
                fc = g(part, "functionCall")
                if isinstance(fc, dict):
                    call_id = str(fc.get("id") or f"call_{i}_{j}")
                    name = str(fc.get("name") or "")
                    sig = g(part, "thoughtSignature")
                    extra = {"google": {"thought_signature": sig}} if sig else None
                    calls.append(hub_tool_call(call_id, name, dumps(fc.get("args") or {}), extra))
                    pending.append((call_id, name))
                elif isinstance(part.get("text"), str) and not part.get("thought"):
                    texts.append(part["text"])
            if texts or calls:
                msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or (None if calls else "")}
                if calls:
                    msg["tool_calls"] = calls
                messages.append(msg)
            continue
        user_parts: list[dict[str, Any]] = []
        for part in parts:
            fr = g(part, "functionResponse")
            if isinstance(fr, dict):
                name = str(fr.get("name") or "")
                match = next((p for p in pending if fr.get("id") and p[0] == fr["id"]), None) \
                    or next((p for p in pending if p[1] == name), None)
                if match is None:
                    raise ValueError(f"{where}: functionResponse {name!r} does not answer an earlier functionCall.")
                pending.remove(match)
                messages.append({"role": "tool", "tool_call_id": match[0], "content": _response_text(fr.get("response"))})
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                if part["text"]:
                    user_parts.append({"type": "text", "text": part["text"]})
            elif isinstance(g(part, "inlineData"), dict):
                user_parts.append(_inline_to_part(g(part, "inlineData"), where))
            elif isinstance(g(part, "fileData"), dict):
                fd = g(part, "fileData")
                if not str(g(fd, "mimeType") or "image/").startswith("image/"):
                    raise ValueError(f"{where}: only image fileData parts can be relayed.")
                user_parts.append({"type": "image_url", "image_url": {"url": str(g(fd, "fileUri") or "")}})
        if user_parts:
            only_text = all(p["type"] == "text" for p in user_parts)
            messages.append({"role": "user", "content": "".join(p["text"] for p in user_parts) if only_text else user_parts})
    return messages


def request_to_hub(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A Gemini generateContent request → hub chat request (no ``stream`` key)."""
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    contents = g(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("contents must be a non-empty list.")
    messages: list[dict[str, Any]] = []
    system = g(body, "systemInstruction")
    if isinstance(system, str):
        system = {"parts": [{"text": system}]}
    if isinstance(system, dict):
        text = "\n\n".join(str(p.get("text")) for p in system.get("parts") or [] if isinstance(p, dict) and p.get("text"))
        if text:
            messages.append({"role": "system", "content": text})
    messages += _contents_to_hub(contents)
    hub: dict[str, Any] = {"model": model, "messages": messages}
    _generation_config_to_hub(g(body, "generationConfig") or {}, hub)
    tools = []
    for tool in g(body, "tools") or []:
        for decl in g(tool, "functionDeclarations") or []:
            if not isinstance(decl, dict) or not decl.get("name"):
                raise ValueError("Every function declaration needs a name.")
            fn: dict[str, Any] = {"name": str(decl["name"])}
            if decl.get("description"):
                fn["description"] = str(decl["description"])
            json_schema = g(decl, "parametersJsonSchema")
            params = json_schema if isinstance(json_schema, dict) else _schema_to_json(decl.get("parameters"))
            fn["parameters"] = params if isinstance(params, dict) else {"type": "object", "properties": {}}
            tools.append({"type": "function", "function": fn})
    if tools:
        hub["tools"] = tools
        config = g(g(body, "toolConfig"), "functionCallingConfig")
        if isinstance(config, dict):
            mode = str(config.get("mode") or "AUTO").upper()
            allowed = g(config, "allowedFunctionNames") or []
            if mode == "NONE":
                hub["tool_choice"] = "none"
            elif mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1:
                hub["tool_choice"] = {"type": "function", "function": {"name": str(allowed[0])}}
            elif mode == "ANY":
                hub["tool_choice"] = "required"
            else:
                hub["tool_choice"] = "auto"
    return hub


def _generation_config_to_hub(cfg: dict[str, Any], hub: dict[str, Any]) -> None:
    if not isinstance(cfg, dict):
        raise ValueError("generationConfig must be an object.")
    for camel, key in (("temperature", "temperature"), ("topP", "top_p"), ("seed", "seed"),
                       ("presencePenalty", "presence_penalty"), ("frequencyPenalty", "frequency_penalty"),
                       ("maxOutputTokens", "max_completion_tokens"), ("candidateCount", "n")):
        value = g(cfg, camel)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            hub[key] = value
    stops = g(cfg, "stopSequences")
    if isinstance(stops, list) and stops:
        hub["stop"] = [str(s) for s in stops]
    json_schema = g(cfg, "responseJsonSchema")
    schema = json_schema if isinstance(json_schema, dict) else _schema_to_json(g(cfg, "responseSchema"))
    if isinstance(schema, dict):
        hub["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    elif g(cfg, "responseMimeType") == "application/json":
        hub["response_format"] = {"type": "json_object"}
    thinking = g(cfg, "thinkingConfig")
    if isinstance(thinking, dict):
        level = str(g(thinking, "thinkingLevel") or "").upper()
        budget = g(thinking, "thinkingBudget")
        if level in _LEVELS:
            hub["reasoning_effort"] = _LEVELS[level]
        elif isinstance(budget, int) and budget < 0:
            hub["reasoning_effort"] = "medium"
        elif isinstance(budget, int) and budget > 0:
            hub["reasoning_effort"] = effort_for_budget(budget)


# =========================================================================== egress


def _parts_from_hub(content: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts_of(content):
        ptype = part.get("type")
        if ptype in ("text", "refusal"):
            text = str(part.get("text") if ptype == "text" else part.get("refusal") or "")
            if text:
                out.append({"text": text})
        elif ptype == "image_url":
            image = part.get("image_url")
            url = str((image.get("url") if isinstance(image, dict) else image) or "")
            parsed = parse_data_url(url)
            if parsed is not None:
                out.append({"inlineData": {"mimeType": parsed[0], "data": parsed[1]}})
            elif url.startswith(("http://", "https://", "gs://")):
                ext = url.split("?")[0].rsplit(".", 1)[-1].lower()
                mime = {"png": "image/png", "gif": "image/gif", "webp": "image/webp"}.get(ext, "image/jpeg")
                out.append({"fileData": {"mimeType": mime, "fileUri": url}})
            else:
                raise ValueError("Image URLs must be http(s) or base64 data URLs.")
        elif ptype == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = str(audio.get("format") or "wav")
            out.append({"inlineData": {"mimeType": "audio/wav" if fmt == "wav" else f"audio/{fmt}", "data": str(audio.get("data") or "")}})
        elif ptype == "file":
            parsed = parse_data_url(str((part.get("file") or {}).get("file_data") or ""))
            if parsed is None:
                raise ValueError("Files sent to Gemini must be base64 data (file_data); file ids cannot be relayed.")
            out.append({"inlineData": {"mimeType": parsed[0], "data": parsed[1]}})
    return out


def _contents_from_hub(messages: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    bare_model = model.removeprefix("models/")
    needs_signature = bare_model.startswith("gemini-") and not bare_model.startswith(("gemini-1", "gemini-2"))

    def push(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": list(parts)})

    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            continue
        if role == "assistant":
            parts = _parts_from_hub(msg.get("content"))
            for i, call in enumerate(msg.get("tool_calls") or []):
                fn = call.get("function") or {}
                name = str(fn.get("name") or "")
                names[str(call.get("id") or "")] = name
                part: dict[str, Any] = {"functionCall": {"name": name, "args": parse_arguments(fn.get("arguments"), keep_raw=True)}}
                sig = gemini_signature_of(call) or (GEMINI_DUMMY_SIGNATURE if i == 0 and needs_signature else None)
                if sig:
                    part["thoughtSignature"] = sig
                parts.append(part)
            push("model", parts)
        elif role == "tool":
            call_id = str(msg.get("tool_call_id") or "")
            if call_id not in names:
                raise ValueError(f"The tool message for {call_id!r} does not answer an earlier tool call.")
            text = text_of(msg.get("content"))
            parsed = parse_arguments(text) if text.strip().startswith("{") else {}
            response = parsed if parsed else {"result": text}
            push("user", [{"functionResponse": {"name": names[call_id], "response": response}}])
        elif role in ("user", "function"):
            push("user", _parts_from_hub(msg.get("content")))
        else:
            raise ValueError(f"Unknown message role {role!r}.")
    if not contents:
        contents.append({"role": "user", "parts": [{"text": "..."}]})
    return contents


def _thinking_config(effort: str, model: str) -> dict[str, Any] | None:
    name = model.removeprefix("models/")
    if not name.startswith("gemini-") or name.startswith(("gemini-1", "gemini-2.0")):
        return None
    if not name.startswith("gemini-2"):
        if effort == "none":
            return None
        return {"thinkingLevel": "low" if effort in ("minimal", "low") else "high", "includeThoughts": True}
    if effort == "none":
        return {"thinkingBudget": 128 if "pro" in name else 0}
    budget = GEMINI_BUDGETS.get(effort)
    return {"thinkingBudget": budget, "includeThoughts": True} if budget else None


def request_from_hub(hub: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A hub chat request → a Gemini generateContent body (model goes in the URL)."""
    messages = check_messages({**hub, "n": 1})
    body: dict[str, Any] = {"contents": _contents_from_hub(messages, model)}
    system = system_text(messages)
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    decls = []
    for fn in function_tools(hub):
        decl: dict[str, Any] = {"name": str(fn["name"])}
        if fn.get("description"):
            decl["description"] = str(fn["description"])
        params = fn.get("parameters")
        if isinstance(params, dict) and (params.get("properties") or params.get("type") not in (None, "object")):
            converted = _schema_to_gemini(params)
            if converted is None:
                decl["parametersJsonSchema"] = params
            else:
                decl["parameters"] = converted
        decls.append(decl)
    if decls:
        body["tools"] = [{"functionDeclarations": decls}]
        choice = hub.get("tool_choice")
        mode: dict[str, Any] | None = None
        if choice == "auto":
            mode = {"mode": "AUTO"}
        elif choice == "required":
            mode = {"mode": "ANY"}
        elif choice == "none":
            mode = {"mode": "NONE"}
        elif isinstance(choice, dict) and (name := (choice.get("function") or {}).get("name")):
            mode = {"mode": "ANY", "allowedFunctionNames": [str(name)]}
        if mode is not None:
            body["toolConfig"] = {"functionCallingConfig": mode}
    cfg: dict[str, Any] = {}
    for key, camel in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                       ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
                       ("n", "candidateCount")):
        if isinstance(hub.get(key), (int, float)) and not isinstance(hub.get(key), bool):
            cfg[camel] = hub[key]
    if (max_tokens := max_tokens_of(hub)) is not None:
        cfg["maxOutputTokens"] = max_tokens
    if stops := stop_list(hub):
        cfg["stopSequences"] = stops[:5]
    fmt = json_schema_of(hub.get("response_format"))
    if fmt is not None:
        cfg["responseMimeType"] = "application/json"
        if fmt[1] is not None:
            converted = _schema_to_gemini(fmt[1])
            cfg["responseSchema" if converted is not None else "responseJsonSchema"] = converted if converted is not None else fmt[1]
    if isinstance(hub.get("reasoning_effort"), str) and (tc := _thinking_config(hub["reasoning_effort"], model)):
        cfg["thinkingConfig"] = tc
    if cfg:
        body["generationConfig"] = cfg
    return body
