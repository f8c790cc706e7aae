"""Images: ``POST /v1/images/generations`` (JSON) and ``/v1/images/edits`` (multipart),
PROTOCOLS §6.3.  Pure: validation of what routing and billing need, and reading the
images and token usage out of a response.  Bodies otherwise pass through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NAME = "images"
RESPONSE_FORMATS = ("url", "b64_json")
MAX_N = 10
# The most output tokens one image can take at token-priced models (gpt-image's largest,
# high quality), for the hold when a model is priced by tokens.
MAX_IMAGE_TOKENS = 6_240


@dataclass(frozen=True, slots=True)
class ImageRequest:
    model: str
    prompt: str
    n: int
    size: str       # "" when the client named none (the model's default size)
    quality: str    # "" likewise

    def images(self) -> tuple[tuple[str, str], ...]:
        return ((self.size, self.quality),) * self.n


def _int_field(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # multipart fields arrive as text
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"The '{what}' field must be an integer from {low} to {high}.")
    return value


def parse(body: Mapping[str, Any], *, edit: bool = False) -> ImageRequest:
    """Validate a generation body or an edit's text fields; ValueError in one sentence."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("The 'model' field is required and must be a string.")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("The 'prompt' field is required and must be a non-empty string.")
    n = _int_field(body.get("n", 1), "n", 1, MAX_N)
    fmt = body.get("response_format")
    if fmt is not None and fmt not in RESPONSE_FORMATS:
        raise ValueError("The 'response_format' field must be 'url' or 'b64_json'.")
    stream = body.get("stream")
    if stream is True or stream == "true":
        raise ValueError("Streamed image generation is not supported by this relay; leave 'stream' unset.")
    size, quality = body.get("size", ""), body.get("quality", "")
    if not isinstance(size, str) or not isinstance(quality, str):
        raise ValueError("The 'size' and 'quality' fields must be strings.")
    return ImageRequest(model, prompt, n, size, quality)


def images_in(response: Any, req: ImageRequest) -> tuple[tuple[str, str], ...]:
    """(size, quality) of each image the upstream returned: the response's own ``size`` and
    ``quality`` when it names them (gpt-image resolves ``auto``), else the request's."""
    if not isinstance(response, dict) or not isinstance(response.get("data"), list):
        raise ValueError("the upstream's image response has no 'data' array")
    size, quality = response.get("size"), response.get("quality")
    made = (size if isinstance(size, str) else req.size, quality if isinstance(quality, str) else req.quality)
    return (made,) * len(response["data"])


def token_usage(response: Any) -> tuple[int, int] | None:
    """(input_tokens, output_tokens) of a token-metered image model, or None."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    inp, out = usage.get("input_tokens"), usage.get("output_tokens")
    if isinstance(inp, int) and isinstance(out, int):
        return inp, out
    return None
