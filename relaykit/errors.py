"""One error tree for the whole product.

Each error knows its HTTP status and a short machine ``kind``; it is rendered in exactly
two places: the server middleware (in the client's dialect) and the CLI (one sentence on
stderr and a non-zero exit).  Messages are full sentences meant for people, and never
carry secrets.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error a client or an operator can cause."""

    status: int = 500
    kind: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})


class ConfigError(RelayError):
    """The configuration file is missing, unreadable or invalid."""

    status = 500
    kind = "config"


class NotFoundError(RelayError):
    status = 404
    kind = "not_found"


class InvalidRequest(RelayError):
    status = 400
    kind = "invalid_request"
    code = "invalid_request_error"


class AuthenticationFailed(RelayError):
    status = 401
    kind = "authentication"
    code = "invalid_api_key"


class PermissionDenied(RelayError):
    status = 403
    kind = "permission"
    code = "model_not_allowed"


class ModelNotFound(RelayError):
    status = 404
    kind = "not_found"
    code = "model_not_found"


class InsufficientQuota(RelayError):
    status = 402
    kind = "insufficient_quota"
    code = "insufficient_quota"


class PayloadTooLarge(RelayError):
    status = 413
    kind = "invalid_request"
    code = "request_too_large"


class RateLimited(RelayError):
    status = 429
    kind = "rate_limit"
    code = "rate_limit_exceeded"


class UpstreamError(RelayError):
    """The upstream failed or answered with something unusable."""

    status = 502
    kind = "upstream"
    code = "upstream_error"

    def __init__(self, message: str, *, status: int = 502, retryable: bool = True, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.status = status
        self.retryable = retryable


class UpstreamTimeout(UpstreamError):
    kind = "timeout"
    code = "upstream_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, status=504, retryable=True)


class ServiceUnavailable(RelayError):
    """relaykit itself cannot serve right now (database down, shutting down)."""

    status = 503
    kind = "unavailable"
    code = "service_unavailable"


class CliError(RelayError):
    """An operator mistake on the command line."""

    status = 1
    kind = "cli"


class MethodNotAllowed(RelayError):
    status = 405
    kind = "invalid_request"
    code = "method_not_allowed"
