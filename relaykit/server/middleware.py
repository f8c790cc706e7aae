"""Middleware: the one place where errors become responses (in the route's dialect),
request bodies are size-checked before they are read, and nothing escapes as a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from ..dialects import openai_chat
from ..errors import InvalidRequest, MethodNotAllowed, NotFoundError, PayloadTooLarge, RelayError
from .render import DIALECT_KEY, error_response

log = logging.getLogger("relaykit.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _render(request: web.Request, dialect: str, err: RelayError) -> web.Response:
    """In the route's dialect, or by the handler's own ``render_error`` when it has one
    (APIs whose errors are not a chat dialect's: Midjourney, Suno; see task_routes)."""
    own = getattr(request.match_info.handler, "render_error", None)
    if own is not None:
        return own(err)  # type: ignore[no-any-return]
    return error_response(request.get(DIALECT_KEY, dialect), err)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    dialect = openai_chat.NAME
    try:
        resource = request.match_info.route.resource
        dialect = getattr(request.match_info.handler, "dialect", None) or request.get(DIALECT_KEY) or dialect
        if resource is None or isinstance(request.match_info.http_exception, web.HTTPNotFound):
            raise NotFoundError(f"There is no endpoint {request.method} {request.path} on this relay.",
                                code="unknown_url")
        limit = request.app._client_max_size  # noqa: SLF001 - aiohttp keeps it private
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"The request body is larger than the relay accepts ({limit // (1024 * 1024)} MB).")
        return await handler(request)
    except RelayError as err:
        return _render(request, dialect, err)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app._client_max_size  # noqa: SLF001
        return _render(request, dialect, PayloadTooLarge(
            f"The request body is larger than the relay accepts ({limit // (1024 * 1024)} MB)."))
    except RequestPayloadError:
        # the body broke off, or does not decode as its Content-Encoding says (a client's doing)
        encoding = request.headers.get("Content-Encoding", "")
        said = f" as {encoding}" if encoding else ""
        return _render(request, dialect, InvalidRequest(f"The request body could not be read{said}; "
                                                        "send it whole, and compressed only as it says."))
    except web.HTTPMethodNotAllowed:
        return error_response(dialect, MethodNotAllowed(f"{request.method} is not allowed on {request.path}."))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _render(request, dialect,
                       RelayError("relaykit hit an internal error; the operator can find it in the log."))
