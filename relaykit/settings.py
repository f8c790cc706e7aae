"""YAML configuration -> validated, frozen settings (SPEC §2).

Every problem is collected (not raised one at a time) with the line it came from, so
``relaykit config check`` can print them all and ``serve`` can refuse to start on errors.
``${VAR}`` references are resolved from the environment; prices are accepted in either
notation (USD per 1M tokens, or one-api ratios) and normalised to ratios.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import platformdirs
import yaml

from .domain import CHANNEL_TYPES, Channel, Group, Price, Timeouts
from .errors import ConfigError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_QUOTA_PER_USD = 500_000


@dataclass(frozen=True, slots=True)
class Problem:
    line: int | None
    message: str
    severity: str = "error"  # "error" or "warning"

    def render(self, path: str) -> str:
        where = f"{path} line {self.line}" if self.line else path
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 3000
    max_body_mb: float = 32.0
    drain_seconds: float = 30.0
    expose_overhead: bool = False
    batch_scheduling: bool = True  # Linux SCHED_BATCH for serve's threads (server/scheduling.py)


@dataclass(frozen=True, slots=True)
class BillingSettings:
    quota_per_usd: int = DEFAULT_QUOTA_PER_USD
    default_max_tokens: int = 4096
    checkin_enabled: bool = False
    checkin_min_usd: Decimal = Decimal("0.002")
    checkin_max_usd: Decimal = Decimal("0.02")
    timezone: str | None = None  # IANA name for calendar days (check-in, usage); None = the server's


@dataclass(frozen=True, slots=True)
class AccountsSettings:
    self_registration: bool = False  # POST /api/user/register
    session_days: float = 7.0        # lifetime of a self-service API session token
    card_key_file: str | None = None  # HMAC key for card codes; default: beside the SQLite file


@dataclass(frozen=True, slots=True)
class LogsSettings:
    retention_days: float = 7.0
    store_bodies: bool = False


@dataclass(frozen=True, slots=True)
class RetrySettings:
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class HealthConfig:
    eject_after: int = 5
    eject_seconds: float = 30.0
    eject_max_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Per-customer limits (per-token limits live on the token).  None = no limit."""
    user_rpm: int | None = None
    user_tpm: int | None = None
    user_concurrency: int | None = None
    token_concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """Long-running tasks (Midjourney, Suno, video): how the poller follows them."""
    poll_seconds: float = 5.0         # an open task's upstream is asked for news this often
    poll_max_seconds: float = 60.0    # the backoff after failed polls stops growing here
    deadline_seconds: float = 3600.0  # a task not finished by then fails and its hold is released
    hooks_allow_private: bool = False  # notifyHook to loopback/private addresses (never on a public server)


@dataclass(frozen=True, slots=True)
class OpsSettings:
    """The operator's endpoints and logs (GET /health, GET /metrics, access log)."""
    token: str | None = None   # when set, /metrics and /health's details need "Bearer <token>"
    access_log: bool = False   # one JSON line per request on the "relaykit.access" logger
    locked: bool = False       # a token was configured but its ${VAR} is unset: nobody gets in


@dataclass(frozen=True, slots=True)
class Settings:
    path: str
    database_url: str
    redis_url: str | None = None
    server: ServerSettings = field(default_factory=ServerSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    accounts: AccountsSettings = field(default_factory=AccountsSettings)
    logs: LogsSettings = field(default_factory=LogsSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    health: HealthConfig = field(default_factory=HealthConfig)
    limits: LimitSettings = field(default_factory=LimitSettings)
    tasks: TaskSettings = field(default_factory=TaskSettings)
    groups: dict[str, Group] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)
    channels: tuple[Channel, ...] = ()
    problems: tuple[Problem, ...] = ()
    redis_prefix: str = "relaykit"       # Redis key prefix: several relays may share one Redis
    stale_hold_seconds: float = 3600.0   # PostgreSQL: holds older than this are released
    ops: OpsSettings = field(default_factory=OpsSettings)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def channel(self, name: str) -> Channel | None:
        return next((c for c in self.channels if c.name == name), None)


def default_data_dir() -> Path:
    return Path(os.environ.get("RELAYKIT_DATA_DIR") or platformdirs.user_data_dir("relaykit"))


def resolve_config_path(explicit: str | None) -> Path:
    """--config, else $RELAYKIT_CONFIG, else ./relaykit.yaml, else the user config dir."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("RELAYKIT_CONFIG")
    if env:
        return Path(env)
    local = Path("relaykit.yaml")
    if local.exists():
        return local
    return Path(platformdirs.user_config_dir("relaykit")) / "relaykit.yaml"


# --------------------------------------------------------------------------- YAML with lines

class _Tree:
    """Plain Python values plus the source line of every mapping key / sequence item."""

    def __init__(self) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}

    def build(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in out:
                    raise _LineError(key_node.start_mark.line + 1, f"duplicate key '{key}'")
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, path + (key,))
                self.lines[path + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        try:
            return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise _LineError(node.start_mark.line + 1, f"the value {node.value!r} is not valid: {what}") from None


class _LineError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def parse_yaml(text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML text; raise ConfigError naming the line on a syntax error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = (exc.problem or exc.context or "invalid YAML").strip()
        raise ConfigError(f"line {line}: YAML syntax error: {what}") from None
    tree = _Tree()
    if node is None:
        return {}, tree.lines
    try:
        return tree.build(node, ()), tree.lines
    except _LineError as exc:
        raise ConfigError(f"line {exc.line}: {exc.message}") from None


# --------------------------------------------------------------------------- validation

_TOP = {"server", "database", "redis", "billing", "logs", "retry", "health", "limits", "groups", "models",
        "channels", "accounts", "ops", "models_file", "tasks"}
_SERVER = {"host", "port", "max_body_mb", "drain_seconds", "expose_overhead", "batch_scheduling"}
_BILLING = {"quota_per_usd", "default_max_tokens", "checkin", "timezone"}
_ACCOUNTS = {"self_registration", "session_days", "card_key_file"}
_CHECKIN = {"enabled", "min_usd", "max_usd"}
_LOGS = {"retention_days", "store_bodies"}
_TASKS = {"poll_seconds", "poll_max_seconds", "deadline_seconds", "hooks_allow_private"}
_CHANNEL = {"name", "type", "base_url", "keys", "models", "model_map", "groups", "priority",
            "weight", "timeouts", "enabled", "api_version", "api"}
_PRICE_USD = {"input", "output", "cache_read", "cache_write", "audio_input", "audio_output"}  # USD per 1M tokens
_PRICE_RATIO = {"ratio", "completion_ratio", "cache_read_ratio", "cache_write_ratio", "audio_input_ratio",
                "audio_output_ratio"}
# Non-token bases.  USD notation: per image, per second of audio, per 1M characters.  Ratio
# notation (one-api's conventions, "ratio 1 = $2 per 1M tokens"): an image or a second of
# audio counts as 1000 tokens, a character as one token.
_UNIT_USD = {"per_image": "image", "per_second": "second", "per_1m_chars": "char"}
_UNIT_RATIO = {"image_ratio": "image", "second_ratio": "second", "char_ratio": "char"}
_UNIT_RATIO_USD = {"image": Decimal("0.002"), "second": Decimal("0.002"), "char": Decimal("0.000002")}
_UNIT_USD_SCALE = {"image": Decimal(1), "second": Decimal(1), "char": Decimal("0.000001")}
_PRICE_FACTORS = {"image_sizes", "image_qualities"}
_PRICE = _PRICE_USD | _PRICE_RATIO | {"per_call"} | set(_UNIT_USD) | set(_UNIT_RATIO) | _PRICE_FACTORS
_BASIS_WORDS = {"token": "token prices", "call": "per_call", "image": "a per-image price",
                "second": "a per-second price", "char": "a per-character price"}


class _Validator:
    def __init__(self, lines: dict[tuple[Any, ...], int], env: dict[str, str]) -> None:
        self.lines = lines
        self.env = env
        self.problems: list[Problem] = []

    def line(self, path: tuple[Any, ...]) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def err(self, path: tuple[Any, ...], msg: str) -> None:
        self.problems.append(Problem(self.line(path), msg))

    def warn(self, path: tuple[Any, ...], msg: str) -> None:
        self.problems.append(Problem(self.line(path), msg, "warning"))

    def mapping(self, value: Any, path: tuple[Any, ...], allowed: set[str], what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(path, f"{what} must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                self.err(path + (key,), f"unknown key '{key}' in {what}")
        return value

    def number(self, value: Any, path: tuple[Any, ...], what: str, *, integer: bool = False,
               minimum: float | None = 0) -> Any:
        ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if not ok:
            self.err(path, f"{what} must be {'an integer' if integer else 'a number'}, not {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.err(path, f"{what} must be at least {minimum}")
            return None
        return value

    def decimal(self, value: Any, path: tuple[Any, ...], what: str) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.err(path, f"{what} must be a number, not {value!r}")
            return None
        try:
            dec = Decimal(str(value))
        except InvalidOperation:
            self.err(path, f"{what} must be a number, not {value!r}")
            return None
        if dec < 0 or not dec.is_finite():
            self.err(path, f"{what} must be a non-negative number")
            return None
        return dec

    def text(self, value: Any, path: tuple[Any, ...], what: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.err(path, f"{what} must be a non-empty string")
            return None
        return value

    def expand(self, value: str, path: tuple[Any, ...], what: str) -> str | None:
        """Replace ${VAR}; an unset variable is a warning and makes the value unusable."""
        missing = [m for m in _VAR.findall(value) if m not in self.env]
        if missing:
            self.warn(path, f"{what} uses ${{{missing[0]}}}, which is not set in the environment")
            return None
        return _VAR.sub(lambda m: self.env[m.group(1)], value)

    def string_list(self, value: Any, path: tuple[Any, ...], what: str) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.err(path, f"{what} must be a list of strings")
            return []
        return list(value)


def _factors(v: _Validator, name: str, spec: dict[str, Any], key: str,
             path: tuple[Any, ...]) -> tuple[tuple[str, Decimal], ...] | None:
    raw = spec.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        v.err(path + (key,), f"{key} of model '{name}' must map each value to a factor, like "
                             "{\"1024x1024\": 1, \"1792x1024\": 2}")
        return None
    out = []
    for k, f in raw.items():
        got = v.decimal(f, path + (key, k), f"the {key} factor '{k}' of model '{name}'")
        if got is None:
            return None
        out.append((str(k), got))
    return tuple(out)


def _price(v: _Validator, name: str, spec: Any, path: tuple[Any, ...]) -> Price | None:
    spec = v.mapping(spec, path, _PRICE, f"price of model '{name}'")
    if not spec:
        v.err(path, f"model '{name}' needs a price (input/output, ratio/completion_ratio, per_call, "
                    "per_image, per_second or per_1m_chars)")
        return None
    vals = {k: v.decimal(spec[k], path + (k,), f"{k} of model '{name}'") for k in spec
            if k in _PRICE and k not in _PRICE_FACTORS}
    if any(val is None for val in vals.values()):
        return None
    usd = (_PRICE_USD | set(_UNIT_USD)) & vals.keys()
    ratio = (_PRICE_RATIO | set(_UNIT_RATIO)) & vals.keys()
    if usd and ratio:
        v.err(path, f"model '{name}' mixes USD prices ({', '.join(sorted(usd))}) with ratios "
                    f"({', '.join(sorted(ratio))}); use one notation")
        return None
    bases = {unit for k, unit in {**_UNIT_USD, **_UNIT_RATIO}.items() if k in vals}
    if (_PRICE_USD | _PRICE_RATIO) & vals.keys():
        bases.add("token")
    per_call = vals.get("per_call")
    if per_call is not None:
        bases.add("call")
    if bases == {"call", "token"}:
        v.err(path, f"model '{name}' has per_call and token prices; use one")
        return None
    if len(bases) > 1:
        v.err(path, f"model '{name}' is priced by {' and '.join(_BASIS_WORDS[b] for b in sorted(bases))}; "
                    "use one basis")
        return None
    sizes = _factors(v, name, spec, "image_sizes", path)
    qualities = _factors(v, name, spec, "image_qualities", path)
    if sizes is None or qualities is None:
        return None
    if (sizes or qualities) and bases != {"image"}:
        v.err(path, f"model '{name}' has image_sizes/image_qualities factors but no per-image price "
                    "(per_image or image_ratio)")
        return None
    if per_call is not None:
        return Price(model=name, per_call_usd=per_call)
    unit_keys = (set(_UNIT_USD) | set(_UNIT_RATIO)) & vals.keys()
    if unit_keys:
        key = unit_keys.pop()
        basis = {**_UNIT_USD, **_UNIT_RATIO}[key]
        amount = vals[key]
        assert amount is not None
        each = amount * (_UNIT_USD_SCALE[basis] if key in _UNIT_USD else _UNIT_RATIO_USD[basis])
        if basis == "image":
            return Price(model=name, per_image_usd=each, image_size_factors=sizes,
                         image_quality_factors=qualities)
        if basis == "second":
            return Price(model=name, per_second_usd=each)
        return Price(model=name, per_char_usd=each)
    if usd:
        if "input" not in vals:
            v.err(path, f"model '{name}' has USD prices but no 'input' price")
            return None
        inp = vals["input"]
        assert inp is not None
        if inp == 0:
            if any(vals.get(k) for k in ("output", "cache_read", "cache_write", "audio_input", "audio_output")):
                v.err(path, f"model '{name}' has an input price of 0 but other prices; give it a "
                            "non-zero input price or use ratios")
                return None
            return Price(model=name)

        def rel(key: str, default: Decimal) -> Decimal:
            got = vals.get(key)
            return default if got is None else got / inp

        def rel_opt(key: str) -> Decimal | None:
            got = vals.get(key)
            return None if got is None else got / inp

        return Price(model=name, model_ratio=inp / 2, completion_ratio=rel("output", Decimal(1)),
                     cache_read_ratio=rel("cache_read", Decimal(1)),
                     cache_write_ratio=rel("cache_write", Decimal(1)),
                     audio_input_ratio=rel_opt("audio_input"), audio_output_ratio=rel_opt("audio_output"))
    if "ratio" not in vals:
        v.err(path, f"model '{name}' has ratios but no 'ratio'")
        return None
    one = Decimal(1)
    return Price(model=name, model_ratio=vals["ratio"] or Decimal(0),
                 completion_ratio=vals.get("completion_ratio", one) or Decimal(0),
                 cache_read_ratio=vals.get("cache_read_ratio", one) or Decimal(0),
                 cache_write_ratio=vals.get("cache_write_ratio", one) or Decimal(0),
                 audio_input_ratio=vals.get("audio_input_ratio"), audio_output_ratio=vals.get("audio_output_ratio"))


def _models_file(v: _Validator, value: Any, base: Path) -> dict[str, Price]:
    """Prices from the file ``models_file`` names (``relaykit prices import --out`` writes
    one): a mapping of model to price, or a document with a ``models:`` mapping.  Its
    problems name the file and its line; entries under the config's own ``models:`` win."""
    if value is None:
        return {}
    if not isinstance(value, str) or not value:
        v.err(("models_file",), "models_file must be the path of a YAML prices file")
        return {}
    path = Path(value.replace("{config_dir}", str(base)))
    path = path if path.is_absolute() else base / path
    try:
        raw, lines = parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        v.err(("models_file",), f"models_file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}")
        return {}
    except ConfigError as exc:
        v.err(("models_file",), f"models_file {path}: {exc.message}")
        return {}
    inner = _Validator(lines, v.env)
    models = raw.get("models") if isinstance(raw, dict) and set(raw) == {"models"} else raw
    prefix = ("models",) if models is not raw else ()
    out: dict[str, Price] = {}
    if raw is not None and not isinstance(models, dict):
        inner.err((), "a prices file must map model names to prices")
    for name, spec in (models or {}).items():
        price = _price(inner, name, spec, prefix + (name,))
        if price is not None:
            out[name] = price
    for p in inner.problems:
        v.problems.append(Problem(None, f"{path.name} line {p.line}: {p.message}", p.severity))
    return out


def _channel(v: _Validator, spec: Any, path: tuple[Any, ...], groups: dict[str, Group]) -> Channel | None:
    if not isinstance(spec, dict):
        v.err(path, "each channel must be a mapping")
        return None
    name = v.text(spec.get("name"), path + ("name",), "channel name")
    label = f"channel '{name}'" if name else "channel"
    spec = v.mapping(spec, path, _CHANNEL, label)
    ctype = spec.get("type")
    if ctype not in CHANNEL_TYPES:
        v.err(path + ("type",), f"{label} has unknown type {ctype!r}; expected one of {', '.join(CHANNEL_TYPES)}")
        return None
    base_url = spec.get("base_url", "")
    if ctype != "mock":
        raw = v.text(base_url, path + ("base_url",), f"base_url of {label}")
        base_url = v.expand(raw, path + ("base_url",), f"base_url of {label}") if raw else None
        if base_url and not base_url.startswith(("http://", "https://")):
            v.err(path + ("base_url",), f"base_url of {label} must start with http:// or https://")
            return None
    keys: list[str] = []
    for i, key in enumerate(v.string_list(spec.get("keys"), path + ("keys",), f"keys of {label}")):
        got = v.expand(key, path + ("keys", i), f"key {i + 1} of {label}")
        if got:
            keys.append(got)
    models = v.string_list(spec.get("models"), path + ("models",), f"models of {label}")
    if not models:
        v.err(path + ("models",), f"{label} lists no models")
    model_map_raw = spec.get("model_map") or {}
    model_map: list[tuple[str, str]] = []
    if not isinstance(model_map_raw, dict) or not all(isinstance(a, str) and isinstance(b, str)
                                                       for a, b in model_map_raw.items()):
        v.err(path + ("model_map",), f"model_map of {label} must map client names to upstream names")
    else:
        model_map = list(model_map_raw.items())
    chan_groups = v.string_list(spec.get("groups", ["default"]), path + ("groups",), f"groups of {label}")
    for g in chan_groups:
        if g not in groups:
            v.err(path + ("groups",), f"{label} names group '{g}', which is not declared under groups")
    priority = v.number(spec.get("priority", 0), path + ("priority",), f"priority of {label}",
                        integer=True, minimum=None)
    weight = v.number(spec.get("weight", 1), path + ("weight",), f"weight of {label}", integer=True, minimum=0)
    tspec = v.mapping(spec.get("timeouts"), path + ("timeouts",), {"connect", "first_byte", "idle"},
                      f"timeouts of {label}")
    tvals = {k: v.number(tspec[k], path + ("timeouts", k), f"timeouts.{k} of {label}") for k in tspec
             if k in {"connect", "first_byte", "idle"}}
    enabled = spec.get("enabled", True)
    api = spec.get("api", "chat")
    if api not in ("chat", "responses"):
        v.err(path + ("api",), f"api of {label} must be 'chat' or 'responses'")
        api = "chat"
    if not isinstance(enabled, bool):
        v.err(path + ("enabled",), f"enabled of {label} must be true or false")
    if name is None or base_url is None or priority is None or weight is None or None in tvals.values():
        return None
    if ctype != "mock" and not keys:
        v.warn(path + ("keys",), f"{label} has no usable key and will not be used")
        enabled = False
    return Channel(name=name, type=ctype, base_url=str(base_url).rstrip("/"), keys=tuple(keys),
                   models=tuple(models), model_map=tuple(model_map), groups=tuple(chan_groups),
                   priority=int(priority), weight=int(weight),
                   timeouts=Timeouts(**{k: float(x) for k, x in tvals.items()}), enabled=bool(enabled),
                   api_version=spec.get("api_version"), api=api)


def _timezone(v: _Validator, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        v.err(("billing", "timezone"), f"billing.timezone must be a time zone name like 'UTC', not {value!r}")
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        v.err(("billing", "timezone"), f"billing.timezone '{value}' is not a known time zone (e.g. 'UTC', "
                                       "'Asia/Shanghai')")
        return None
    return value


def _redis_url(v: _Validator, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        v.err(("redis", "url"), f"redis.url must be a URL like redis://127.0.0.1:6379/0, not {value!r}")
        return None
    url = v.expand(value, ("redis", "url"), "redis.url")
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        v.err(("redis", "url"), "redis.url must start with redis://, rediss:// or unix://")
        return None
    return url


def _ops(v: _Validator, raw: Any) -> OpsSettings:
    o = v.mapping(raw, ("ops",), {"token", "access_log"}, "ops")
    raw_token = o.get("token")
    token, locked = None, False
    if raw_token is not None:
        if not isinstance(raw_token, str) or (len(raw_token) < 16 and not _VAR.search(raw_token)):
            v.err(("ops", "token"), "ops.token must be a string of at least 16 characters (or ${VAR} naming one)")
        else:
            token = v.expand(raw_token, ("ops", "token"), "ops.token")  # unset ${VAR}: a warning
            # fail closed: a token that was meant but cannot be read locks /metrics, never opens it
            locked = token is None
            if token is not None and len(token) < 16:
                v.err(("ops", "token"), "ops.token must be at least 16 characters long")
                token, locked = None, True
    access_log = o.get("access_log", False)
    if not isinstance(access_log, bool):
        v.err(("ops", "access_log"), "ops.access_log must be true or false")
        access_log = False
    return OpsSettings(token=token, access_log=access_log, locked=locked)


def _port(v: _Validator, value: Any) -> int:
    port = v.number(value, ("server", "port"), "server.port", integer=True)
    if port is not None and port > 65535:
        v.err(("server", "port"), "server.port must be between 0 and 65535")
        return 0
    return int(port or 0)


def build_settings(raw: Any, lines: dict[tuple[Any, ...], int], *, path: str,
                   env: dict[str, str] | None = None) -> Settings:
    v = _Validator(lines, dict(os.environ) if env is None else env)
    top = v.mapping(raw, (), _TOP, "the configuration")

    s = v.mapping(top.get("server"), ("server",), _SERVER, "server")
    batch_scheduling = s.get("batch_scheduling", True)
    if not isinstance(batch_scheduling, bool):
        v.err(("server", "batch_scheduling"), "server.batch_scheduling must be true or false")
        batch_scheduling = True
    server = ServerSettings(
        host=str(s.get("host", "127.0.0.1")),
        port=_port(v, s.get("port", 3000)),
        max_body_mb=v.number(s.get("max_body_mb", 32), ("server", "max_body_mb"), "server.max_body_mb") or 32,
        drain_seconds=v.number(s.get("drain_seconds", 30), ("server", "drain_seconds"), "server.drain_seconds") or 0,
        expose_overhead=bool(s.get("expose_overhead", False)),
        batch_scheduling=batch_scheduling,
    )
    db = v.mapping(top.get("database"), ("database",), {"url", "stale_hold_minutes"}, "database")
    db_url = str(db.get("url") or "sqlite:///{data_dir}/relaykit.db")
    base = Path(path).resolve().parent
    db_url = db_url.replace("{data_dir}", str(default_data_dir())).replace("{config_dir}", str(base))
    db_url = v.expand(db_url, ("database", "url"), "database.url") or db_url
    stale_hold = v.number(db.get("stale_hold_minutes", 60), ("database", "stale_hold_minutes"),
                          "database.stale_hold_minutes", minimum=1)
    r = v.mapping(top.get("redis"), ("redis",), {"url", "prefix"}, "redis")
    redis_url = _redis_url(v, r.get("url"))
    redis_prefix = r.get("prefix", "relaykit")
    if not isinstance(redis_prefix, str) or not redis_prefix or any(c.isspace() for c in redis_prefix):
        v.err(("redis", "prefix"), "redis.prefix must be a word without spaces, like 'relaykit'")
        redis_prefix = "relaykit"
    ops = _ops(v, top.get("ops"))

    b = v.mapping(top.get("billing"), ("billing",), _BILLING, "billing")
    c = v.mapping(b.get("checkin"), ("billing", "checkin"), _CHECKIN, "billing.checkin")
    billing = BillingSettings(
        quota_per_usd=v.number(b.get("quota_per_usd", DEFAULT_QUOTA_PER_USD), ("billing", "quota_per_usd"),
                               "billing.quota_per_usd", integer=True, minimum=1) or DEFAULT_QUOTA_PER_USD,
        default_max_tokens=v.number(b.get("default_max_tokens", 4096), ("billing", "default_max_tokens"),
                                    "billing.default_max_tokens", integer=True, minimum=1) or 4096,
        checkin_enabled=bool(c.get("enabled", False)),
        checkin_min_usd=v.decimal(c.get("min_usd", "0.002"), ("billing", "checkin", "min_usd"),
                                  "billing.checkin.min_usd") or Decimal(0),
        checkin_max_usd=v.decimal(c.get("max_usd", "0.02"), ("billing", "checkin", "max_usd"),
                                  "billing.checkin.max_usd") or Decimal(0),
        timezone=_timezone(v, b.get("timezone")),
    )
    if billing.checkin_min_usd > billing.checkin_max_usd:
        v.err(("billing", "checkin"), "billing.checkin.min_usd must not be larger than max_usd")
    ac = v.mapping(top.get("accounts"), ("accounts",), _ACCOUNTS, "accounts")
    key_file = ac.get("card_key_file")
    if key_file is not None and not isinstance(key_file, str):
        v.err(("accounts", "card_key_file"), "accounts.card_key_file must be a path")
        key_file = None
    accounts = AccountsSettings(
        self_registration=bool(ac.get("self_registration", False)),
        session_days=v.number(ac.get("session_days", 7), ("accounts", "session_days"), "accounts.session_days",
                              minimum=0.001) or 7.0,
        card_key_file=key_file.replace("{data_dir}", str(default_data_dir())) if key_file else None,
    )
    lg = v.mapping(top.get("logs"), ("logs",), _LOGS, "logs")
    logs = LogsSettings(
        retention_days=v.number(lg.get("retention_days", 7), ("logs", "retention_days"), "logs.retention_days") or 0,
        store_bodies=bool(lg.get("store_bodies", False)),
    )
    rt = v.mapping(top.get("retry"), ("retry",), {"max_attempts"}, "retry")
    retry = RetrySettings(max_attempts=v.number(rt.get("max_attempts", 3), ("retry", "max_attempts"),
                                                "retry.max_attempts", integer=True, minimum=1) or 3)

    hs = v.mapping(top.get("health"), ("health",), {"eject_after", "eject_seconds", "eject_max_seconds"}, "health")
    health = HealthConfig(
        eject_after=v.number(hs.get("eject_after", 5), ("health", "eject_after"), "health.eject_after",
                             integer=True, minimum=1) or 5,
        eject_seconds=v.number(hs.get("eject_seconds", 30), ("health", "eject_seconds"), "health.eject_seconds") or 30,
        eject_max_seconds=v.number(hs.get("eject_max_seconds", 300), ("health", "eject_max_seconds"),
                                   "health.eject_max_seconds") or 300,
    )
    lm = v.mapping(top.get("limits"), ("limits",), {"user_rpm", "user_tpm", "user_concurrency", "token_concurrency"},
                   "limits")
    limits = LimitSettings(**{k: v.number(lm[k], ("limits", k), f"limits.{k}", integer=True, minimum=1)
                              for k in ("user_rpm", "user_tpm", "user_concurrency", "token_concurrency")
                              if lm.get(k) is not None})

    tk = v.mapping(top.get("tasks"), ("tasks",), _TASKS, "tasks")
    tdef = TaskSettings()
    task_numbers = {k: v.number(tk.get(k, getattr(tdef, k)), ("tasks", k), f"tasks.{k}", minimum=0.01)
                    for k in ("poll_seconds", "poll_max_seconds", "deadline_seconds")}
    allow_private = tk.get("hooks_allow_private", False)
    if not isinstance(allow_private, bool):
        v.err(("tasks", "hooks_allow_private"), "tasks.hooks_allow_private must be true or false")
        allow_private = False
    tasks = TaskSettings(**{k: float(x) if x is not None else getattr(tdef, k) for k, x in task_numbers.items()},
                         hooks_allow_private=allow_private)

    groups: dict[str, Group] = {}
    graw = top.get("groups")
    if graw is None:
        groups["default"] = Group("default", Decimal(1), "")
    elif not isinstance(graw, dict):
        v.err(("groups",), "groups must be a mapping of group name to {ratio, description}")
    else:
        for gname, gspec in graw.items():
            gp = ("groups", gname)
            gspec = v.mapping(gspec, gp, {"ratio", "description"}, f"group '{gname}'")
            ratio = v.decimal(gspec.get("ratio", 1), gp + ("ratio",), f"ratio of group '{gname}'")
            if ratio is not None:
                groups[gname] = Group(gname, ratio, str(gspec.get("description", "")))

    prices: dict[str, Price] = {}
    mraw = top.get("models") or {}
    if not isinstance(mraw, dict):
        v.err(("models",), "models must be a mapping of model name to price")
    else:
        for mname, mspec in mraw.items():
            price = _price(v, mname, mspec, ("models", mname))
            if price is not None:
                prices[mname] = price
    for mname, price in _models_file(v, top.get("models_file"), base).items():
        prices.setdefault(mname, price)  # the config's own models: entries win

    channels: list[Channel] = []
    craw = top.get("channels") or []
    if not isinstance(craw, list):
        v.err(("channels",), "channels must be a list")
        craw = []
    seen: set[str] = set()
    for i, cspec in enumerate(craw):
        ch = _channel(v, cspec, ("channels", i), groups)
        if ch is None:
            continue
        if ch.name in seen:
            v.err(("channels", i, "name"), f"channel name '{ch.name}' is used twice")
            continue
        seen.add(ch.name)
        channels.append(ch)

    served = {m for ch in channels for m in ch.client_models()}
    for ch_i, ch in enumerate(channels):
        for m in ch.client_models():
            if m not in prices:
                v.warn(("channels", ch_i, "models"), f"model '{m}' served by channel '{ch.name}' has no "
                                                   "price; requests for it will be refused")
    for m in prices:
        if m not in served:
            v.warn(("models", m), f"model '{m}' has a price but no channel serves it")

    return Settings(path=path, database_url=db_url, redis_url=redis_url,
                    redis_prefix=redis_prefix, stale_hold_seconds=float(stale_hold or 60) * 60, ops=ops,
                    server=server, billing=billing, accounts=accounts, logs=logs, retry=retry, health=health,
                    limits=limits, tasks=tasks, groups=groups, prices=prices,
                    channels=tuple(channels), problems=tuple(v.problems))


def load_settings(path: str | Path, *, env: dict[str, str] | None = None) -> Settings:
    """Read and validate a config file.  Raises ConfigError only when it cannot be read or parsed;
    validation problems are returned in ``Settings.problems``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"The configuration file {p} does not exist; run 'relaykit init' to create one.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"The configuration file {p} is not UTF-8 text.") from None
    except OSError as exc:
        raise ConfigError(f"The configuration file {p} cannot be read: {exc.strerror}.") from None
    try:
        raw, lines = parse_yaml(text)
    except ConfigError as exc:
        raise ConfigError(f"{p} {exc.message}") from None
    return build_settings(raw, lines, path=str(p), env=env)
