"""Client requests of the task APIs (PROTOCOLS §7), checked and reduced to what relaykit
needs: the action, the priced model, the fields forwarded upstream, the fields the answers
repeat, and the client's ``notifyHook``.  Pure: every problem is a ValueError whose text is
one sentence for the client.

Large inputs (base64 images) are forwarded but never kept in the task's stored request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .tasks import mj_action_of, mj_model

MAX_PROMPT = 8192
MAX_HOOK = 1024
MAX_SECONDS = 60


@dataclass(frozen=True, slots=True)
class TaskRequest:
    platform: str                      # midjourney, suno, video
    action: str                        # IMAGINE, UPSCALE, MUSIC, LYRICS, GENERATE, ...
    model: str                         # the priced model name
    upstream: dict[str, Any]           # fields for the upstream adapter
    echo: dict[str, Any]               # fields the answers repeat (stored with the task)
    parent: str | None = None          # relaykit id of the task this one acts on
    notify_hook: str = ""
    seconds: int | None = None         # clip length asked for (video)
    extra: dict[str, Any] = field(default_factory=dict)


def _obj(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    return body


def _text(body: Mapping[str, Any], key: str, *, required: bool = False, limit: int = MAX_PROMPT) -> str:
    v = body.get(key)
    if v is None or v == "":
        if required:
            raise ValueError(f"The '{key}' field is required.")
        return ""
    if not isinstance(v, str):
        raise ValueError(f"The '{key}' field must be a string.")
    if len(v) > limit:
        raise ValueError(f"The '{key}' field is longer than {limit} characters.")
    return v


def _strings(body: Mapping[str, Any], key: str, *, least: int = 0, most: int = 10) -> list[str]:
    v = body.get(key)
    if v is None:
        v = []
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"The '{key}' field must be an array of strings.")
    if not least <= len(v) <= most:
        raise ValueError(f"The '{key}' field must hold between {least} and {most} items.")
    return list(v)


def hook(body: Mapping[str, Any], key: str) -> str:
    url = _text(body, key, limit=MAX_HOOK)
    if url and not url.startswith(("http://", "https://")):
        raise ValueError(f"The '{key}' field must be an http:// or https:// URL.")
    return url


# --------------------------------------------------------------------------- Midjourney

_MJ_COMMON = ("botType", "state")
_CHANGE_ACTIONS = ("UPSCALE", "VARIATION", "REROLL")


def mj_request(kind: str, body: Any) -> TaskRequest:
    """``kind`` is the path segment after ``/mj/submit/``."""
    b = _obj(body)
    bot = _text(b, "botType", limit=32)
    if bot and bot not in ("MID_JOURNEY", "NIJI_JOURNEY"):
        raise ValueError("The 'botType' field must be MID_JOURNEY or NIJI_JOURNEY.")
    common = {k: b[k] for k in _MJ_COMMON if isinstance(b.get(k), str) and b.get(k)}
    echo: dict[str, Any] = dict(common)
    notify = hook(b, "notifyHook")
    if kind == "imagine":
        prompt = _text(b, "prompt", required=True)
        images = _strings(b, "base64Array", most=5)
        echo["prompt"] = prompt
        return TaskRequest("midjourney", "IMAGINE", mj_model("IMAGINE"),
                           {**common, "prompt": prompt, "base64Array": images}, echo, notify_hook=notify)
    if kind == "blend":
        images = _strings(b, "base64Array", least=2, most=5)
        dims = _text(b, "dimensions", limit=16) or "SQUARE"
        if dims not in ("PORTRAIT", "SQUARE", "LANDSCAPE"):
            raise ValueError("The 'dimensions' field must be PORTRAIT, SQUARE or LANDSCAPE.")
        return TaskRequest("midjourney", "BLEND", mj_model("BLEND"),
                           {**common, "base64Array": images, "dimensions": dims}, echo, notify_hook=notify)
    if kind == "describe":
        image = _text(b, "base64", required=True, limit=64 * 1024 * 1024)
        return TaskRequest("midjourney", "DESCRIBE", mj_model("DESCRIBE"), {**common, "base64": image}, echo,
                           notify_hook=notify)
    if kind == "simple-change":
        content = _text(b, "content", required=True, limit=128).split()
        if len(content) != 2 or content[1].upper() not in ("U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "R"):
            raise ValueError("The 'content' field must look like '<taskId> U1' (U1-U4, V1-V4 or R).")
        op = content[1].upper()
        b = {**b, "taskId": content[0], "action": {"U": "UPSCALE", "V": "VARIATION", "R": "REROLL"}[op[0]],
             "index": int(op[1]) if len(op) > 1 else None}
        kind = "change"
    if kind == "change":
        parent = _text(b, "taskId", required=True, limit=64)
        action = _text(b, "action", required=True, limit=16).upper()
        if action not in _CHANGE_ACTIONS:
            raise ValueError("The 'action' field must be UPSCALE, VARIATION or REROLL.")
        index = b.get("index")
        if action != "REROLL":
            if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= 4:
                raise ValueError("The 'index' field must be an integer from 1 to 4.")
        up = {**common, "action": action}
        if action != "REROLL":
            up["index"] = index
            echo["index"] = index
        return TaskRequest("midjourney", action, mj_model(action), up, echo, parent=parent, notify_hook=notify)
    if kind == "action":
        parent = _text(b, "taskId", required=True, limit=64)
        custom = _text(b, "customId", required=True, limit=512)
        action = mj_action_of(custom)
        echo["customId"] = custom
        return TaskRequest("midjourney", action, mj_model(action), {**common, "customId": custom}, echo,
                           parent=parent, notify_hook=notify)
    raise ValueError(f"There is no Midjourney submit action '{kind}'.")


# --------------------------------------------------------------------------- Suno

_SUNO_FIELDS = ("prompt", "gpt_description_prompt", "mv", "title", "tags", "continue_clip_id")


def suno_request(kind: str, body: Any) -> TaskRequest:
    """``/suno/submit/{music,lyrics}`` and ``/v1/music/generations`` (``kind`` music or lyrics)."""
    b = _obj(body)
    notify = hook(b, "notify_hook")
    if kind == "lyrics":
        prompt = _text(b, "prompt", required=True)
        return TaskRequest("suno", "LYRICS", "suno_lyrics", {"prompt": prompt}, {"prompt": prompt},
                           notify_hook=notify)
    if kind != "music":
        raise ValueError(f"There is no Suno submit action '{kind}'.")
    up: dict[str, Any] = {k: _text(b, k) for k in _SUNO_FIELDS if _text(b, k)}
    if not up.get("mv") and isinstance(b.get("model"), str) and b["model"].startswith("chirp"):
        up["mv"] = b["model"]
    if not (up.get("prompt") or up.get("gpt_description_prompt")):
        raise ValueError("A song needs 'prompt' (lyrics) or 'gpt_description_prompt' (a description).")
    instrumental = b.get("make_instrumental")
    if instrumental is not None:
        if not isinstance(instrumental, bool):
            raise ValueError("The 'make_instrumental' field must be true or false.")
        up["make_instrumental"] = instrumental
    cont = b.get("continue_at")
    if cont is not None:
        if isinstance(cont, bool) or not isinstance(cont, (int, float)) or cont < 0:
            raise ValueError("The 'continue_at' field must be a number of seconds.")
        up["continue_at"] = cont
    parent = _text(b, "task_id", limit=64) or None
    echo: dict[str, Any] = {k: up[k] for k in ("prompt", "gpt_description_prompt", "mv", "title", "tags") if k in up}
    return TaskRequest("suno", "MUSIC", "suno_music", up, echo, parent=parent, notify_hook=notify)


# --------------------------------------------------------------------------- video

_META_FIELDS = ("negative_prompt", "aspect_ratio", "mode", "cfg_scale", "camera_control", "seed")


def _seconds(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError("The 'duration' must be a number of seconds.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_SECONDS:
        raise ValueError(f"The 'duration' must be a number of seconds between 1 and {MAX_SECONDS}.")
    return max(1, int(round(value)))


def video_request(body: Any) -> TaskRequest:
    """``/v1/video/generations`` (new-api unified) and ``/v1/videos`` (OpenAI, after its form
    fields were read into a dict): model, prompt, an optional image, duration, size."""
    b = _obj(body)
    model = _text(b, "model", required=True, limit=128)
    prompt = _text(b, "prompt")
    meta = b.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ValueError("The 'metadata' field must be an object.")
    image = (_text(b, "image_url", limit=64 * 1024 * 1024) or _text(b, "image", limit=64 * 1024 * 1024)
             or _text(b, "input_reference", limit=64 * 1024 * 1024))
    if not image and b.get("images") is not None:
        images = _strings(b, "images", most=4)
        image = images[0] if images else ""
    if not prompt and not image:
        raise ValueError("A video needs a 'prompt', an image ('image_url'), or both.")
    seconds = _seconds(b.get("duration", b.get("seconds")))
    size = _text(b, "size", limit=32)
    w, h = b.get("width"), b.get("height")
    if not size and isinstance(w, int) and isinstance(h, int) and not isinstance(w, bool) and w > 0 and h > 0:
        size = f"{w}x{h}"
    up: dict[str, Any] = {"prompt": prompt, "image": image, "size": size}
    for key in _META_FIELDS:
        v = b.get(key, meta.get(key))
        if v is not None:
            up[key] = v
    mode = up.get("mode")
    if mode is not None and mode not in ("std", "pro"):
        raise ValueError("The 'mode' must be 'std' or 'pro'.")
    echo: dict[str, Any] = {"prompt": prompt, "size": size, "image": bool(image)}
    if image.startswith(("http://", "https://")):
        echo["image_url"] = image
    return TaskRequest("video", "GENERATE", model, up, echo, notify_hook=hook(b, "notify_hook"),
                       seconds=seconds, extra={"mode": mode})
