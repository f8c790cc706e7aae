"""Issue 3: requests shaped like the coding agents' (Claude Code, Codex CLI), to a channel
of the agent's own dialect and to channels of every other dialect.

Claude Code: ``/v1/messages?beta=true``, ``anthropic-beta`` flags, ``x-app: cli``,
adaptive thinking, 22 tools, ``cache_control`` on system, message and tool, a system
message among the messages (what Claude Code 2.1 sends),
``max_tokens`` 64000, streamed; the second turn replays the thinking block with its
signature.  It also calls ``count_tokens?beta=true``.

Codex CLI: Responses with ``store: false``, ``include: ["reasoning.encrypted_content"]``,
``parallel_tool_calls: false``, ``prompt_cache_key``, streamed; the second turn replays
the reasoning items (with ``encrypted_content``) and the function call before its output.

A real agent binary, when one can be installed and run offline, is tried at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from .dialect_fixtures import (MODEL, TOOL_RESULT, UPSTREAM_MODEL, UPSTREAMS, WEATHER_SCHEMA, charges, Clients,
                               expected_quota, module_fixtures, settled_for, wire_usage, World)

pytestmark = pytest.mark.asyncio(loop_scope="module")

BETAS = ["claude-code-20250219", "interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14",
         "context-management-2025-06-27"]
QUESTION = "What is the weather in Paris? Use the tool."


shared, clients = module_fixtures("agents")


def _schema(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "string", "description": f"the {n}"} for n in names},
            "required": list(names[:1]), "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#"}


# 22 tools, named and shaped like Claude Code's built-ins and a few MCP tools.
CLAUDE_CODE_TOOLS: list[dict[str, Any]] = [
    {"name": name, "description": f"{name}: does what a coding agent's {name} does.", "input_schema": _schema(*args)}
    for name, args in [
        ("Task", ("description", "prompt", "subagent_type")), ("Bash", ("command", "timeout", "description")),
        ("Glob", ("pattern", "path")), ("Grep", ("pattern", "path", "glob", "output_mode")), ("LS", ("path",)),
        ("ExitPlanMode", ("plan",)), ("Read", ("file_path", "offset", "limit")),
        ("Edit", ("file_path", "old_string", "new_string")), ("MultiEdit", ("file_path", "edits")),
        ("Write", ("file_path", "content")), ("NotebookEdit", ("notebook_path", "new_source")),
        ("WebFetch", ("url", "prompt")), ("TodoWrite", ("todos",)), ("WebSearch", ("query",)),
        ("BashOutput", ("bash_id",)), ("KillShell", ("shell_id",)), ("SlashCommand", ("command",)),
        ("mcp__github__create_pull_request", ("owner", "repo", "title")),
        ("mcp__github__get_file_contents", ("owner", "repo", "path")),
        ("mcp__playwright__browser_navigate", ("url",)), ("mcp__memory__search_nodes", ("query",)),
    ]
] + [{"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_SCHEMA,
      "cache_control": {"type": "ephemeral"}}]

CLAUDE_CODE_SYSTEM = [
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
    {"type": "text", "text": "You are an interactive CLI tool that helps users with software engineering tasks. "
                             "Use the tools available to you.", "cache_control": {"type": "ephemeral"}},
]


ENVIRONMENT = "# Environment\nPrimary working directory: /work/repo\nIs a git repository: true"


def claude_code_turn1() -> list[dict[str, Any]]:
    # Claude Code 2.1 also puts system messages among the messages (a beta feature)
    return [{"role": "system", "content": [{"type": "text", "text": ENVIRONMENT}]},
            {"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nThis is a reminder that your todo list is empty.\n"
                                 "</system-reminder>"},
        {"type": "text", "text": QUESTION, "cache_control": {"type": "ephemeral"}}]}]


def check_books(shared: World, user: str, uid: int, upstream: str, logs: list[dict[str, Any]], first: int) -> None:
    """Every request of the conversation logged from the fake's usage and charged by the formula."""
    charged = charges(shared.relay, user)
    assert len(charged) == len(logs)
    for i, log in enumerate(logs):
        w = wire_usage(shared.fakes[upstream], first + i)
        got = (log["prompt_tokens"], log["completion_tokens"], log["cache_read_tokens"], log["cache_write_tokens"])
        assert got == (w["prompt_tokens"], w["completion_tokens"], w["cache_read_tokens"], w["cache_write_tokens"])
        assert not log["estimated"] and log["status"] == 200
        assert charged[log["request_id"]] == log["quota"] == expected_quota(*got)


# --------------------------------------------------------------------------- Claude Code


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_claude_code_shaped_conversation(shared: World, clients: Clients, upstream: str) -> None:
    fake = shared.fakes[upstream]
    user, uid, key = shared.customer()
    c = clients.anthropic(key)
    first = len(fake.requests)
    common: dict[str, Any] = dict(
        model=MODEL[upstream], max_tokens=64000, betas=BETAS, system=CLAUDE_CODE_SYSTEM, tools=CLAUDE_CODE_TOOLS,
        thinking={"type": "adaptive"}, metadata={"user_id": "user_0f3a_account__session_7c1e"},
        extra_query={"beta": "true"}, extra_headers={"x-app": "cli", "anthropic-dangerous-direct-browser-access": "true"})

    counted = await c.beta.messages.count_tokens(
        model=MODEL[upstream], betas=BETAS, system=CLAUDE_CODE_SYSTEM, tools=CLAUDE_CODE_TOOLS,
        messages=claude_code_turn1(), extra_query={"beta": "true"})
    assert counted.input_tokens > 0
    assert len(fake.requests) == first  # counted by the relay, no upstream call

    async with c.beta.messages.stream(messages=claude_code_turn1(), **common) as s:
        async for _ in s:
            pass
        turn1 = await s.get_final_message()
    assert turn1.stop_reason == "tool_use"
    uses = [b for b in turn1.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "Paris"})]
    thinking = [b for b in turn1.content if b.type == "thinking"]
    if upstream == "claude":
        # Claude thought, and the signature came through for the replay below
        assert len(thinking) == 1 and thinking[0].signature
    for block in thinking:  # a thinking block a client sees always has its signature field
        assert isinstance(block.signature, str)

    history = [*claude_code_turn1(), {"role": "assistant", "content": [b.model_dump(exclude_none=True)
                                                                          for b in turn1.content]},
               {"role": "user", "content": [
                   {"type": "tool_result", "tool_use_id": uses[0].id, "content": TOOL_RESULT,
                    "cache_control": {"type": "ephemeral"}}]}]
    async with c.beta.messages.stream(messages=history, **common) as s:
        text = "".join([t async for t in s.text_stream])
        turn2 = await s.get_final_message()
    assert turn2.stop_reason == "end_turn"
    assert TOOL_RESULT in text and text == "".join(b.text for b in turn2.content if b.type == "text")

    sent = fake.requests[first:]
    assert len(sent) == 2
    for rec in sent:
        if upstream == "claude":
            assert (rec.path, rec.query) == ("/v1/messages", "beta=true")
            assert rec.headers["anthropic-beta"] == ",".join(BETAS)
            body = rec.json
            assert body["model"] == UPSTREAM_MODEL[upstream] and body["max_tokens"] == 64000
            assert body["thinking"] == {"type": "adaptive"} and body["stream"] is True
            assert len(body["tools"]) == 22 and body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
            assert body["system"] == CLAUDE_CODE_SYSTEM
        else:
            # nothing Anthropic-only leaks to another vendor
            assert "anthropic-beta" not in rec.headers and "beta" not in rec.query
            text_body = rec.body.decode()
            assert "cache_control" not in text_body and "signature" not in text_body
            assert "claude-code-20250219" not in text_body
            assert "Primary working directory" in text_body  # the mid-conversation system message
            names = tool_names(upstream, rec.json)
            assert names == [t["name"] for t in CLAUDE_CODE_TOOLS]
            assert max_tokens_of(upstream, rec.json) == 64000
    if upstream == "claude":
        assert sent[1].json["messages"][0] == claude_code_turn1()[0]
        replayed = sent[1].json["messages"][2]["content"]
        assert replayed[0] == {"type": "thinking", "thinking": thinking[0].thinking,
                               "signature": thinking[0].signature}
    else:
        assert_tool_result_paired(upstream, sent[1].json, uses[0].id)

    logs = await settled_for(shared.relay, uid, 2)
    check_books(shared, user, uid, upstream, logs, first)
    assert all(log["dialect"] == "anthropic" and log["stream"] for log in logs)


def tool_names(upstream: str, body: dict[str, Any]) -> list[str]:
    if upstream == "chat":
        return [t["function"]["name"] for t in body["tools"]]
    if upstream == "resp":
        return [t["name"] for t in body["tools"]]
    if upstream == "claude":
        return [t["name"] for t in body["tools"]]
    return [d["name"] for t in body["tools"] for d in t.get("functionDeclarations") or t.get("function_declarations")]


def max_tokens_of(upstream: str, body: dict[str, Any]) -> Any:
    if upstream == "chat":
        return body.get("max_completion_tokens", body.get("max_tokens"))
    if upstream == "resp":
        return body.get("max_output_tokens")
    if upstream == "claude":
        return body.get("max_tokens")
    return (body.get("generationConfig") or {}).get("maxOutputTokens")


def assert_tool_result_paired(upstream: str, body: dict[str, Any], client_call_id: str) -> None:
    """The second turn carries the tool call and its result, paired the way the upstream's API demands."""
    if upstream == "chat":
        msgs = body["messages"]
        calls = [m for m in msgs if m.get("role") == "assistant" and m.get("tool_calls")]
        results = [m for m in msgs if m.get("role") == "tool"]
        assert len(calls) == 1 and len(results) == 1
        assert msgs.index(results[0]) == msgs.index(calls[0]) + 1
        assert results[0]["tool_call_id"] == calls[0]["tool_calls"][0]["id"]
        assert results[0]["content"] == TOOL_RESULT or TOOL_RESULT in json.dumps(results[0]["content"])
    elif upstream == "resp":
        items = body["input"]
        call = [i for i in items if i.get("type") == "function_call"]
        out = [i for i in items if i.get("type") == "function_call_output"]
        assert len(call) == 1 and len(out) == 1 and out[0]["call_id"] == call[0]["call_id"]
        assert TOOL_RESULT in json.dumps(out[0]["output"])
        assert "encrypted_content" not in json.dumps(items)
    elif upstream == "claude":
        msgs = body["messages"]
        i = next(n for n, m in enumerate(msgs) if m["role"] == "assistant")
        uses = [b for b in msgs[i]["content"] if b["type"] == "tool_use"]
        results = [b for b in msgs[i + 1]["content"] if b["type"] == "tool_result"]
        assert len(uses) == 1 and len(results) == 1 and results[0]["tool_use_id"] == uses[0]["id"]
        for block in msgs[i]["content"]:  # Anthropic rejects thinking without its signature
            if block["type"] == "thinking":
                assert block.get("signature")
        assert TOOL_RESULT in json.dumps(results[0])
    else:
        contents = body["contents"]
        calls = [p for c in contents for p in c["parts"] if "functionCall" in p]
        answers = [p for c in contents for p in c["parts"] if "functionResponse" in p]
        assert len(calls) == 1 and len(answers) == 1
        assert answers[0]["functionResponse"]["name"] == calls[0]["functionCall"]["name"] == "get_weather"
        assert TOOL_RESULT in json.dumps(answers[0])
    assert client_call_id  # the client's own id went back; the upstream saw its own (mapped) id


# --------------------------------------------------------------------------- Codex CLI

CODEX_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "shell", "description": "Runs a shell command and returns its output.",
     "strict": False, "parameters": {"type": "object", "properties": {
         "command": {"type": "array", "items": {"type": "string"}}, "workdir": {"type": "string"},
         "timeout_ms": {"type": "number"}}, "required": ["command"], "additionalProperties": False}},
    {"type": "function", "name": "update_plan", "description": "Updates the task plan.", "strict": False,
     "parameters": {"type": "object", "properties": {"plan": {"type": "array", "items": {
         "type": "object", "properties": {"step": {"type": "string"}, "status": {"type": "string"}},
         "required": ["step", "status"], "additionalProperties": False}}}, "required": ["plan"],
         "additionalProperties": False}},
    {"type": "function", "name": "view_image", "description": "Attach a local image.", "strict": False,
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"],
                    "additionalProperties": False}},
    {"type": "function", "name": "get_weather", "description": "Current weather", "strict": False,
     "parameters": WEATHER_SCHEMA},
]
CODEX_INSTRUCTIONS = "You are Codex, based on GPT-5. You are running as a coding agent in the Codex CLI."


def codex_prelude() -> list[dict[str, Any]]:
    return [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "<environment_context>\n  <cwd>/work/repo</cwd>\n"
                                           "  <approval_policy>never</approval_policy>\n</environment_context>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
    ]


@pytest.mark.parametrize("upstream", ["resp", "claude", "chat", "gemini"])
async def test_codex_shaped_conversation(shared: World, clients: Clients, upstream: str) -> None:
    fake = shared.fakes[upstream]
    user, uid, key = shared.customer()
    c = clients.openai(key)
    first = len(fake.requests)
    common: dict[str, Any] = dict(
        model=MODEL[upstream], instructions=CODEX_INSTRUCTIONS, tools=CODEX_TOOLS, tool_choice="auto",
        parallel_tool_calls=False, reasoning={"effort": "medium", "summary": "auto"}, store=False,
        include=["reasoning.encrypted_content"], prompt_cache_key="0199a0c4-codex-session", stream=True)

    async def turn(items: list[dict[str, Any]]) -> Any:
        events = [ev async for ev in await c.responses.create(input=items, **common)]
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
        assert [e.sequence_number for e in events] == list(range(len(events)))
        return events[-1].response

    turn1 = await turn(codex_prelude())
    calls = [o for o in turn1.output if o.type == "function_call"]
    assert [(o.name, json.loads(o.arguments)) for o in calls] == [("get_weather", {"city": "Paris"})]
    reasoning = [o for o in turn1.output if o.type == "reasoning"]
    if upstream == "resp":
        # the real thing: an opaque reasoning item the client must replay, since store is false
        assert len(reasoning) == 1 and reasoning[0].encrypted_content

    replay = [o.model_dump(exclude_none=True) for o in turn1.output]
    turn2 = await turn([*codex_prelude(), *replay,
                        {"type": "function_call_output", "call_id": calls[0].call_id, "output": TOOL_RESULT}])
    assert TOOL_RESULT in turn2.output_text
    assert turn2.output_text.startswith("Hello from fake-")

    sent = fake.requests[first:]
    assert len(sent) == 2
    if upstream == "resp":
        for rec in sent:
            body = rec.json
            assert rec.path == "/v1/responses" and body["model"] == UPSTREAM_MODEL[upstream]
            assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
            assert body["parallel_tool_calls"] is False and body["prompt_cache_key"] == "0199a0c4-codex-session"
        replayed = [i for i in sent[1].json["input"] if i.get("type") == "reasoning"]
        assert replayed == [reasoning[0].model_dump(exclude_none=True)]
    else:
        for rec in sent:
            text_body = rec.body.decode()
            for codex_only in ("encrypted_content", "reasoning.encrypted_content", '"store"', '"include"'):
                assert codex_only not in text_body
            if upstream == "chat":  # Chat Completions has prompt caching keys too
                assert rec.json["prompt_cache_key"] == "0199a0c4-codex-session"
            else:
                assert "prompt_cache_key" not in text_body
            assert tool_names(upstream, rec.json) == [t["name"] for t in CODEX_TOOLS]
        assert_tool_result_paired(upstream, sent[1].json, calls[0].call_id)

    logs = await settled_for(shared.relay, uid, 2)
    check_books(shared, user, uid, upstream, logs, first)
    assert all(log["dialect"] == "openai_responses" and log["stream"] for log in logs)


# --------------------------------------------------------------------------- real agents
# Opt-in: set RELAYKIT_AGENTS_DIR to a directory where
#   npm install @anthropic-ai/claude-code @openai/codex
# was run.  The agents then run one offline prompt each against the relay and a fake.

AGENTS_DIR = os.environ.get("RELAYKIT_AGENTS_DIR", "")


def agent_binary(name: str) -> Path:
    if not AGENTS_DIR:
        pytest.skip("real coding agents are opt-in: set RELAYKIT_AGENTS_DIR to a directory with "
                    "`npm install @anthropic-ai/claude-code @openai/codex` done")
    path = Path(AGENTS_DIR) / "node_modules" / ".bin" / name
    if not path.exists() or shutil.which("node") is None:
        pytest.skip(f"{name} is not installed under {AGENTS_DIR} (or node is missing)")
    return path


async def run_agent(args: list[str], env: dict[str, str], cwd: Path) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(*args, cwd=str(cwd), env={"PATH": os.environ.get("PATH", ""), **env},
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, (out.decode()[-2000:], err.decode()[-2000:])
    return out.decode(), err.decode()


@pytest.mark.parametrize("upstream", ["claude", "chat"])
async def test_real_claude_code_answers_through_the_relay(shared: World, upstream: str,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    claude = agent_binary("claude")
    fake = shared.fakes[upstream]
    _, uid, key = shared.customer()
    first = len(fake.requests)
    home = tmp_path_factory.mktemp("claude-home")
    out, _ = await run_agent([str(claude), "-p", "say hello to the relay", "--output-format", "json"], {
        "HOME": str(home), "ANTHROPIC_BASE_URL": shared.relay.url, "ANTHROPIC_API_KEY": key,
        "ANTHROPIC_MODEL": MODEL[upstream], "ANTHROPIC_SMALL_FAST_MODEL": MODEL[upstream],
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": MODEL[upstream], "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"}, home)
    result = json.loads(out)
    assert not result["is_error"], result.get("result")
    assert result["result"].startswith(f"Hello from fake-{'anthropic' if upstream == 'claude' else 'openai'}!")
    sent = fake.requests[first:]
    assert sent and all(key not in json.dumps(dict(r.headers)) for r in sent)
    logs = await settled_for(shared.relay, uid, len(sent))
    assert all(log["status"] == 200 and not log["estimated"] for log in logs)


@pytest.mark.parametrize("upstream", ["resp", "claude"])
async def test_real_codex_answers_through_the_relay(shared: World, upstream: str,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    codex = agent_binary("codex")
    fake = shared.fakes[upstream]
    _, uid, key = shared.customer()
    first = len(fake.requests)
    home = tmp_path_factory.mktemp("codex-home")
    (home / ".codex").mkdir()
    provider = f'{{name="relay", base_url="{shared.relay.base}", env_key="RELAY_KEY", wire_api="responses"}}'
    out, _ = await run_agent([str(codex), "exec", "--skip-git-repo-check", "-m", MODEL[upstream],
                              "-c", "model_provider=relay", "-c", f"model_providers.relay={provider}",
                              "say hello to the relay"],
                             {"HOME": str(home), "CODEX_HOME": str(home / ".codex"), "RELAY_KEY": key}, home)
    assert f"Hello from fake-{'openai' if upstream == 'resp' else 'anthropic'}!" in out
    sent = fake.requests[first:]
    assert sent
    if upstream == "resp":
        assert all(r.json["store"] is False and r.json["stream"] is True for r in sent)
    logs = await settled_for(shared.relay, uid, len(sent))
    assert all(log["status"] == 200 and not log["estimated"] for log in logs)
