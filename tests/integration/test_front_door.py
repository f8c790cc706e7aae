"""The front door: what a new user types first.

`scripts/serve` from a clean data dir answers a chat completion on the mock channel (and a
second start keeps the demo user's balance), `scripts/build-pyz` builds a zipapp that runs
`version` and serves, and the shipped configuration files pass `relaykit config check`.

These tests drive the real scripts and the real `relaykit` processes as subprocesses and
read what a user would read: their stdout, exit codes, HTTP answers and `--json` output.
They wait for servers by reading stdout until the "listening" line, with a deadline.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import yaml

import relaykit

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "relaykit.example.yaml"
SAMPLES = sorted((REPO / "config").glob("*.yaml"))
LISTENING = r"^relaykit listening on (http://\S+)$"
QUOTA_PER_USD = 500_000
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Interpreter that runs the zipapp: the one this venv was made from, so the compiled
# wheels inside the .pyz match it and the venv's own site-packages are not on the path.
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment with relaykit state pointed into tmp_path."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"RELAYKIT_CONFIG", "PYTHONPATH", "VIRTUAL_ENV"}}
    env["RELAYKIT_DATA_DIR"] = str(tmp_path / "data")
    env["SHIV_ROOT"] = str(tmp_path / "shiv")
    env.update(extra)
    return env


def estimated_tokens(text: str) -> int:
    """SPEC's estimation rule: each non-ASCII character is a token, ASCII 4 chars a token."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def chat(url: str, token: str, model: str, text: str) -> tuple[int, dict[str, Any]]:
    """POST /v1/chat/completions with urllib (no proxy: the server is on loopback)."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}")


class Process:
    """A long-running subprocess whose stdout lines are collected by a reader thread."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], stderr_path: Path) -> None:
        self.argv = argv
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("w+", encoding="utf-8")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace")
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="stdout-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def describe(self) -> str:
        return (f"command: {' '.join(self.argv)}\n--- stdout ---\n{self.output}\n"
                f"--- stderr ---\n{self.stderr_path.read_text(encoding='utf-8', errors='replace')}")

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first stdout line matching pattern, waiting at most timeout seconds for it."""
        rx = re.compile(pattern)
        for line in self.lines:
            if m := rx.search(line):
                return m
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {timeout} s\n{self.describe()}")
            if line is None:
                self.proc.wait(timeout=10)
                pytest.fail(f"exited ({self.proc.returncode}) before printing a line matching {pattern!r}\n"
                            f"{self.describe()}")
            self.lines.append(line)
            if m := rx.search(line):
                return m

    def terminate(self, timeout: float = 45.0) -> int:
        """SIGTERM, then the exit code once the process and its stdout have ended."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return code

    def __enter__(self) -> Process:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()


def run(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, encoding="utf-8",
                          stdin=subprocess.DEVNULL, timeout=timeout)


def mock_gpt_charge(prompt_tokens: int, completion_tokens: int) -> int:
    """quota = ceil(group_ratio x model_ratio x (prompt + completion x completion_ratio)) with
    the example config's USD prices (model_ratio = input / 2, completion_ratio = output / input)."""
    price = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["models"]["mock-gpt"]
    inp, out = Decimal(str(price["input"])), Decimal(str(price["output"]))
    return math.ceil((inp / 2) * (prompt_tokens + completion_tokens * (out / inp)))


def assert_mock_answer(status: int, body: dict[str, Any], said: str) -> dict[str, Any]:
    assert status == 200, body
    answer = f"This is the relaykit mock model. You said: {said}"
    assert body["object"] == "chat.completion" and body["model"] == "mock-gpt"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": answer, "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        estimated_tokens(said), estimated_tokens(answer), estimated_tokens(said) + estimated_tokens(answer))
    return usage


# --------------------------------------------------------------------------- scripts/serve

def start_serve_script(tmp_path: Path, env: dict[str, str], run_no: int) -> Process:
    # From a directory that is not the repo: the script must find its own way there.
    return Process([str(REPO / "scripts" / "serve"), "--port", "0"], cwd=tmp_path, env=env,
                   stderr_path=tmp_path / f"serve-{run_no}.stderr")


def test_scripts_serve_answers_a_chat_completion_on_the_mock_channel(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    said = "Hello from the front door"

    with start_serve_script(tmp_path, env, 1) as srv:
        # Generous: the first start on a machine may still create .venv and install.
        token = srv.expect(r"demo token:\s+(sk-\S+)", timeout=600)[1]
        banner_url = srv.expect(r"^\s+URL:\s+(http://\S+)$")[1]
        url = srv.expect(LISTENING, timeout=60)[1]
        assert url == banner_url, "the URL printed before starting is not the one served"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and not url.endswith(":0")
        assert "created just now with $5 of credit" in srv.output
        # The curl example is ready to paste: the real URL and the real token.
        assert f"curl {url}/v1/chat/completions" in srv.output
        assert f'-H "Authorization: Bearer {token}"' in srv.output

        status, body = chat(url, token, "mock-gpt", said)
        usage = assert_mock_answer(status, body, said)

        assert srv.terminate() == 0, srv.describe()
    assert srv.lines[-1] == "relaykit stopped"

    # The data went to RELAYKIT_DATA_DIR, and the request was billed before exit.
    assert (tmp_path / "data" / "relaykit.db").is_file()
    relaykit_cli = [sys.executable, "-m", "relaykit"]
    shown = run(relaykit_cli + ["user", "show", "demo", "--json", "--config", str(EXAMPLE)], env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    charge = mock_gpt_charge(usage["prompt_tokens"], usage["completion_tokens"])
    assert json.loads(shown.stdout)["quota"] == 5 * QUOTA_PER_USD - charge

    # A second start reuses the demo user without another $5, with a new token.
    with start_serve_script(tmp_path, env, 2) as again:
        token2 = again.expect(r"demo token:\s+(sk-\S+)", timeout=120)[1]
        url2 = again.expect(LISTENING, timeout=60)[1]
        assert token2 != token
        assert "already existed; its balance is unchanged" in again.output
        status, body = chat(url2, token2, "mock-gpt", said)
        assert_mock_answer(status, body, said)
        assert again.terminate() == 0, again.describe()

    shown = run(relaykit_cli + ["user", "show", "demo", "--json", "--config", str(EXAMPLE)], env=env, cwd=tmp_path)
    assert json.loads(shown.stdout)["quota"] == 5 * QUOTA_PER_USD - 2 * charge
    tokens = run(relaykit_cli + ["token", "list", "--user", "demo", "--json", "--config", str(EXAMPLE)],
                 env=env, cwd=tmp_path)
    assert tokens.returncode == 0, tokens.stderr
    assert len(json.loads(tokens.stdout)) == 2
    audit = run(relaykit_cli + ["audit", "--config", str(EXAMPLE)], env=env, cwd=tmp_path)
    assert audit.returncode == 0, audit.stdout + audit.stderr


# --------------------------------------------------------------------------- scripts/build-pyz

def test_build_pyz_builds_a_zipapp_that_runs_version_and_serves(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    pyz = tmp_path / "dist" / "relaykit.pyz"
    built = run([str(REPO / "scripts" / "build-pyz"), str(pyz)], env=env, cwd=tmp_path, timeout=900)
    assert built.returncode == 0, built.stdout + built.stderr
    assert pyz.is_file() and os.access(pyz, os.X_OK)
    assert pyz.read_bytes()[:2] == b"#!"

    relaykit_pyz = [BASE_PYTHON, str(pyz)]
    version = run(relaykit_pyz + ["version"], env=env, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"relaykit {relaykit.__version__}"
    # It ran from its own unpacked copy, not from this checkout.
    assert list((tmp_path / "shiv").glob("relaykit.pyz_*/site-packages/relaykit/__init__.py"))

    config = ["--config", str(EXAMPLE)]
    assert run(relaykit_pyz + ["user", "create", "zipapp"] + config, env=env, cwd=tmp_path).returncode == 0
    assert run(relaykit_pyz + ["user", "topup", "zipapp", "1"] + config, env=env, cwd=tmp_path).returncode == 0
    made = run(relaykit_pyz + ["token", "create", "--user", "zipapp", "--name", "pyz", "--json"] + config,
               env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["key"]

    with Process(relaykit_pyz + ["serve", "--port", "0"] + config, cwd=tmp_path, env=env,
                 stderr_path=tmp_path / "pyz-serve.stderr") as srv:
        url = srv.expect(LISTENING, timeout=60)[1]
        said = "zipapp says héllo"
        status, body = chat(url, token, "mock-gpt", said)
        assert_mock_answer(status, body, said)
        assert srv.terminate() == 0, srv.describe()


# --------------------------------------------------------------------------- configuration files

def config_check(path: Path, env: dict[str, str], cwd: Path) -> tuple[int, dict[str, Any]]:
    r = run([sys.executable, "-m", "relaykit", "config", "check", "--json", "--config", str(path)], env=env, cwd=cwd)
    return r.returncode, json.loads(r.stdout)


def test_example_config_passes_config_check(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    r = run([sys.executable, "-m", "relaykit", "config", "check", "--config", str(EXAMPLE)], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Configuration is valid." in r.stdout

    code, report = config_check(EXAMPLE, env, tmp_path)
    assert code == 0 and report["ok"] and report["errors"] == []
    served = {(row["channel"], row["model"]) for row in report["matrix"] if row["enabled"]}
    assert {("local-mock", "mock-gpt"), ("local-mock", "mock-mini"), ("local-mock", "mock-fixed")} <= served
    assert report["unpriced_models"] == []


def test_config_dir_holds_the_documented_samples() -> None:
    assert {p.name for p in SAMPLES} >= {"single-vps.yaml", "postgres-redis.yaml"}
    assert (REPO / "config" / "relaykit.service").is_file()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_config_sample_has_no_errors(sample: Path, tmp_path: Path) -> None:
    names = sorted(set(_VAR.findall(sample.read_text(encoding="utf-8"))))
    bare = clean_env(tmp_path)
    for name in names:
        bare.pop(name, None)

    # Without its secrets: only warnings, each about an unset variable or what it disables.
    code, report = config_check(sample, bare, tmp_path)
    assert code == 0 and report["ok"], report["errors"]
    assert report["errors"] == [] and report["unpriced_models"] == [] and report["unserved_models"] == []
    for warning in report["warnings"]:
        assert "is not set in the environment" in warning or "has no usable key" in warning, warning

    # With every ${VAR} set, the sample is clean: not even a warning.
    filled = dict(bare)
    filled.update({n: "https://upstream.example.invalid" if n.endswith("_URL") else f"dummy-{n.lower()}"
                   for n in names})
    code, report = config_check(sample, filled, tmp_path)
    assert code == 0 and report["ok"] and report["errors"] == [] and report["warnings"] == []


def test_systemd_unit_gives_the_drain_time_to_finish() -> None:
    unit: dict[str, list[str]] = {}
    for line in (REPO / "config" / "relaykit.service").read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            unit.setdefault(key.strip(), []).append(value.strip())
    assert unit["ExecStart"][0].endswith("relaykit serve --config /etc/relaykit/relaykit.yaml")
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["User"][0] != "root"
    drain = yaml.safe_load((REPO / "config" / "single-vps.yaml").read_text(encoding="utf-8"))["server"]["drain_seconds"]
    assert int(unit["TimeoutStopSec"][0]) > drain
