"""The lean HTTP/1.1 upstream client (relaykit/relay/http1.py) over TLS, driven through
``UpstreamPool.post`` against real TLS servers on 127.0.0.1 (asyncio.start_server with an
``ssl.SSLContext``) whose certificates are made at test time with ``cryptography`` (already
in the venv through google-auth; nothing is added).

The client trusts the test CA the way an operator would make it: ``SSL_CERT_FILE`` points
at the CA file before the pool creates its default context on the first https request.

Covered: status, headers, exact body and exact request bytes (Host with port, a body above
the 64 KiB split) over TLS, by IP and by host name (the name is checked and sent as SNI);
keep-alive reuse of one TLS connection; a chunked stream read chunk by chunk; bodies that
end, or are cut short, with the server's TLS close; an untrusted, a wrong-name and an
expired certificate, and trust that follows ``SSL_CERT_FILE`` both ways; a handshake that
never completes (connect deadline), a plain-HTTP server and a server that drops the
handshake; idle TLS connections the server closes (close_notify) and the stale retry;
read-side backpressure through the TLS transport; ``close()`` of the pool.

Every test runs on the stock asyncio loop and on uvloop: ``relaykit serve`` runs on uvloop
when it is installed (cli/serve.py), and uvloop's TLS transport is its own implementation.
So the tests are plain functions that run their scenario on a loop of their own (the
``run`` fixture) instead of pytest-asyncio's loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import random
import socket
import ssl
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from relaykit.domain import Timeouts
from relaykit.errors import UpstreamError, UpstreamTimeout
from relaykit.relay.http1 import HIGH_WATER

from . import rawserver
from .rawserver import (
    CHUNKED_HEAD,
    LAST_CHUNK,
    WAIT,
    Handler,
    ServerConn,
    chunk,
    keepalive_handler,
    response,
    serving,
    upstream_pool,
)

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dev dependency off Windows
    uvloop = None  # type: ignore[assignment]

LIMIT = 20.0  # the longest a whole scenario may take: a hang fails the test instead of the run
HEADERS = {"Authorization": "Bearer sk-test", "Content-Type": "application/json"}

# ---------------------------------------------------------------------------- certificates


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _certificate(common_name: str, key: ec.EllipticCurvePrivateKey, *,
                 issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
                 san: Sequence[x509.GeneralName] = (), ca: bool = False,
                 valid_days: tuple[int, int] = (-1, 30)) -> x509.Certificate:
    """A certificate for ``key``, signed by ``issuer`` (self-signed without one).  A leaf
    (``ca=False``) is for TLS servers; a self-signed one is its own CA, as ``openssl req
    -x509`` makes it."""
    now = dt.datetime.now(dt.timezone.utc)
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (_name(common_name), key)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name))
               .issuer_name(issuer_name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=valid_days[0]))
               .not_valid_after(now + dt.timedelta(days=valid_days[1]))
               .add_extension(x509.BasicConstraints(ca=ca or issuer is None, path_length=None), critical=True)
               .add_extension(_key_usage(ca=ca or issuer is None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if not ca:
        builder = (builder
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectAlternativeName(list(san)), critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


LOCAL_SAN = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


@dataclass(frozen=True)
class Pki:
    """Certificate files made for this module."""

    ca_file: Path  # the test CA, what SSL_CERT_FILE names
    chains: dict[str, tuple[Path, Path]]  # server certificate name -> (certificate file, key file)

    def server_context(self, name: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = self.chains[name]
        ctx.load_cert_chain(cert, key)
        return ctx


def _pem(path: Path, *items: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    data = b"".join(
        item.public_bytes(serialization.Encoding.PEM) if isinstance(item, x509.Certificate)
        else item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        for item in items)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    out = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("relaykit test CA", ca_key, ca=True)
    servers: dict[str, tuple[str, Sequence[x509.GeneralName], tuple[int, int], bool]] = {
        # name: (common name, subjectAltName, validity in days from now, signed by the test CA)
        "good": ("localhost", LOCAL_SAN, (-1, 30), True),
        "wrong-host": ("example.invalid", (x509.DNSName("example.invalid"),), (-1, 30), True),
        "expired": ("localhost", LOCAL_SAN, (-30, -1), True),
        "untrusted": ("localhost", LOCAL_SAN, (-1, 30), False),  # self-signed, not in SSL_CERT_FILE
    }
    chains: dict[str, tuple[Path, Path]] = {}
    for name, (cn, san, days, by_ca) in servers.items():
        key = ec.generate_private_key(ec.SECP256R1())
        if by_ca:
            cert = _certificate(cn, key, issuer=(ca, ca_key), san=san, valid_days=days)
        else:
            cert = _certificate(cn, key, san=san, valid_days=days)
        chains[name] = (_pem(out / f"{name}.crt", cert), _pem(out / f"{name}.key", key))
    return Pki(_pem(out / "ca.pem", ca), chains)


@pytest.fixture
def pki(pki_files: Pki, monkeypatch: pytest.MonkeyPatch) -> Pki:
    """The certificates, with the test CA trusted through SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki_files.ca_file))
    return pki_files


# ---------------------------------------------------------------------------- event loops

Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", pytest.param(
    "uvloop", marks=pytest.mark.skipif(uvloop is None, reason="uvloop is not installed"))])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario to its end on a new loop of the parameter's kind, within LIMIT seconds."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run_(scenario: Coroutine[Any, Any, None]) -> None:
        async def bounded() -> None:
            assert type(asyncio.get_running_loop()).__module__.startswith(request.param)
            async with asyncio.timeout(LIMIT):
                await scenario

        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(bounded())

    return run_


# ---------------------------------------------------------------------------- servers (tests/unit/rawserver.py)

# every request carries a bearer key and a JSON content type (rawserver.post sends the type alone)
post = partial(rawserver.post, headers=HEADERS)
post_read = partial(rawserver.post_read, headers=HEADERS)


def assert_plain_error(err: UpstreamError) -> None:
    """An error fit for a client and a log line: one sentence, no traceback, no chained cause."""
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text, text
    assert err.__cause__ is None and err.__suppress_context__


# ---------------------------------------------------------------------------- 1. request and response over TLS


@pytest.mark.parametrize("size", [7, 300_000], ids=lambda n: f"body{n}")
def test_https_post_gets_status_headers_and_exact_body(pki: Pki, run: Run, size: int) -> None:
    body = random.Random(size).randbytes(size)  # 300 kB: the body goes in a second write
    answer = b'{"id":"chatcmpl-1","choices":[]}' + random.Random(-size).randbytes(size)

    async def handler(conn: ServerConn) -> None:
        if await conn.read_request() is not None:
            await conn.send(response(answer, status=201, reason="Created",
                                     headers=[("Content-Type", "application/json"), ("X-Request-Id", "req-1")]))
            await conn.wait_eof()

    async def scenario() -> None:
        async with serving(handler, pki.server_context("good")) as server, upstream_pool() as pool:
            reply = await post(pool, server.url(), body)
            try:
                assert reply.status == 201
                assert reply.headers["content-type"] == "application/json"
                assert reply.headers["X-Request-Id"] == "req-1"
                assert await reply.read() == answer
            finally:
                reply.close()
            (req,) = server.requests
            assert req.head == (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                                f"Content-Length: {size}\r\nAuthorization: Bearer sk-test\r\n"
                                "Content-Type: application/json\r\n\r\n").encode()
            assert req.body == body
            (conn,) = server.conns
            assert conn.tls_version in ("TLSv1.2", "TLSv1.3"), "the request arrived over TLS"

    run(scenario())


def test_host_name_url_is_verified_against_the_dns_name_and_sent_as_sni(pki: Pki, run: Run) -> None:
    async def scenario() -> None:
        async with serving(keepalive_handler, pki.server_context("good")) as server, upstream_pool() as pool:
            assert await post_read(pool, server.url(host="localhost"), b"hi") == b"conn 0 req 1: hi"
            assert server.sni == ["localhost"]
            assert server.requests[0].head.startswith(
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:{server.port}\r\n".encode())

    run(scenario())


# ---------------------------------------------------------------------------- 2. keep-alive


def test_sequential_requests_share_one_tls_connection(pki: Pki, run: Run) -> None:
    async def scenario() -> None:
        async with serving(keepalive_handler, pki.server_context("good")) as server, upstream_pool() as pool:
            assert await post_read(pool, server.url(), b"one") == b"conn 0 req 1: one"
            assert await post_read(pool, server.url(), b"two") == b"conn 0 req 2: two"
            assert len(server.conns) == 1, "one TLS handshake for both requests"
            assert not server.conns[0].eof.is_set(), "the idle connection stays open"

    run(scenario())


# ---------------------------------------------------------------------------- 3. streaming


def test_chunked_stream_arrives_chunk_by_chunk(pki: Pki, run: Run) -> None:
    async def scenario() -> None:
        got_first = asyncio.Event()

        async def handler(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(CHUNKED_HEAD + chunk(b"data: one\n\n"))
            await got_first.wait()  # the second chunk only exists once the client holds the first
            await conn.send(chunk(b"data: two\n\n"))
            await conn.send(LAST_CHUNK)
            await conn.wait_eof()

        async with serving(handler, pki.server_context("good")) as server, upstream_pool() as pool:
            reply = await post(pool, server.url())
            try:
                assert reply.status == 200
                assert reply.headers["Transfer-Encoding"] == "chunked"
                it = reply.chunks()
                assert await anext(it) == b"data: one\n\n"
                got_first.set()
                assert await anext(it) == b"data: two\n\n"
                with pytest.raises(StopAsyncIteration):
                    await anext(it)
            finally:
                reply.close()

    run(scenario())


def test_close_delimited_body_ends_with_the_tls_close(pki: Pki, run: Run) -> None:
    async def handler(conn: ServerConn) -> None:  # no length, no chunks: the close (close_notify) ends it
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
        await conn.send(b"second part" * 1000)

    async def scenario() -> None:
        async with serving(handler, pki.server_context("good")) as server, upstream_pool() as pool:
            for _ in range(2):
                assert await post_read(pool, server.url()) == b"first part, " + b"second part" * 1000
            assert len(server.conns) == 2, "a close-delimited reply's connection is not reused"

    run(scenario())


@pytest.mark.parametrize("sent", [
    response(b"x" * 100)[:-90],  # Content-Length: 100, 10 bytes, then the close
    CHUNKED_HEAD + chunk(b"hello"),  # no last chunk
], ids=["content-length", "chunked"])
def test_body_cut_short_by_a_tls_close_is_an_error_not_a_short_body(pki: Pki, run: Run, sent: bytes) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(sent)

    async def scenario() -> None:
        async with serving(handler, pki.server_context("good")) as server, upstream_pool() as pool:
            reply = await post(pool, server.url())
            try:
                with pytest.raises(UpstreamError) as info:
                    await reply.read()
            finally:
                reply.close()
            assert type(info.value) is UpstreamError and not info.value.retryable

    run(scenario())


# ---------------------------------------------------------------------------- 4. certificates the client refuses


@pytest.mark.parametrize("cert", ["untrusted", "wrong-host", "expired"])
def test_certificate_that_does_not_verify_is_an_upstream_error(pki: Pki, run: Run, cert: str) -> None:
    async def scenario() -> None:
        async with serving(keepalive_handler, pki.server_context(cert)) as server, upstream_pool() as pool:
            with pytest.raises(UpstreamError) as info:
                await post(pool, server.url())
            assert type(info.value) is UpstreamError, "a refusal, not a timeout"
            assert_plain_error(info.value)
            # the operator learns why: the certificate, and what was wrong with it
            reason = {"untrusted": "self-signed", "wrong-host": "not valid for", "expired": "expired"}[cert]
            assert "TLS certificate was refused" in info.value.message and reason in info.value.message.lower()
            assert server.conns == [], "no handshake completed, so no request was sent"

    run(scenario())


def test_self_signed_certificate_is_accepted_once_it_is_in_ssl_cert_file(
        pki: Pki, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    # the control for the 'untrusted' case above: only the trust store made the difference
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.chains["untrusted"][0]))

    async def scenario() -> None:
        async with serving(keepalive_handler, pki.server_context("untrusted")) as server, upstream_pool() as pool:
            assert await post_read(pool, server.url(), b"ok") == b"conn 0 req 1: ok"

    run(scenario())


def test_the_test_ca_is_trusted_only_through_ssl_cert_file(
        pki: Pki, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")  # the system's default store: it does not know the test CA

    async def scenario() -> None:
        async with serving(keepalive_handler, pki.server_context("good")) as server, upstream_pool() as pool:
            with pytest.raises(UpstreamError) as info:
                await post(pool, server.url())
            assert type(info.value) is UpstreamError
            assert_plain_error(info.value)

    run(scenario())


# ---------------------------------------------------------------------------- 5. handshakes that go nowhere


def test_handshake_that_never_completes_times_out_at_the_connect_deadline(pki: Pki, run: Run) -> None:
    connect = 0.3

    async def scenario() -> None:
        hello: list[bytes] = []

        async def handler(conn: ServerConn) -> None:  # plain TCP: takes the ClientHello, never answers
            hello.append(await conn.reader.read(1))
            await conn.wait_eof()

        async with serving(handler, None, scheme="https") as server, upstream_pool() as pool:
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with asyncio.timeout(WAIT):
                with pytest.raises(UpstreamTimeout) as info:
                    await post(pool, server.url(), timeouts=Timeouts(connect=connect, first_byte=5.0, idle=5.0))
            elapsed = loop.time() - started
            assert connect * 0.9 <= elapsed < connect + 1.0, elapsed
            assert_plain_error(info.value)
            assert hello == [b"\x16"], "the client began a TLS handshake (a handshake record)"
            await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)  # and then gave the connection up

    run(scenario())


async def _answers_plain_http(conn: ServerConn) -> None:
    await conn.reader.read(1)
    await conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


async def _drops_the_handshake(conn: ServerConn) -> None:
    await conn.reader.read(1)  # the ClientHello has begun; close without a word


@pytest.mark.parametrize("handler", [_answers_plain_http, _drops_the_handshake], ids=["plain-http", "dropped"])
def test_handshake_the_server_breaks_is_an_upstream_error(pki: Pki, run: Run, handler: Handler) -> None:
    async def scenario() -> None:
        async with serving(handler, None, scheme="https") as server, upstream_pool() as pool:
            async with asyncio.timeout(WAIT):
                with pytest.raises(UpstreamError) as info:
                    await post(pool, server.url())
            assert type(info.value) is UpstreamError, "a failure, not a timeout"
            assert_plain_error(info.value)

    run(scenario())


# ---------------------------------------------------------------------------- idle connections the server closes


def test_server_closing_an_idle_tls_connection_costs_nothing(pki: Pki, run: Run) -> None:
    async def handler(conn: ServerConn) -> None:  # keep-alive in words, then closes (close_notify) at once
        if (req := await conn.read_request()) is not None:
            await conn.send(response(b"answer to " + req.body))

    async def scenario() -> None:
        async with serving(handler, pki.server_context("good")) as server, upstream_pool() as pool:
            assert await post_read(pool, server.url(), b"one") == b"answer to one"
            assert await post_read(pool, server.url(), b"two") == b"answer to two"
            assert len(server.conns) == 2

    run(scenario())


def test_stale_tls_connection_is_retried_once_on_a_fresh_one(pki: Pki, run: Run) -> None:
    async def handler(conn: ServerConn) -> None:
        if conn.index == 0:  # answers once, then takes the next request and closes without a byte
            await conn.read_request()
            await conn.send(response(b"first"))
            await conn.read_request()
        else:
            await keepalive_handler(conn)

    async def scenario() -> None:
        async with serving(handler, pki.server_context("good")) as server, upstream_pool() as pool:
            assert await post_read(pool, server.url(), b"one") == b"first"
            assert await post_read(pool, server.url(), b"two") == b"conn 1 req 1: two"
            assert len(server.conns) == 2
            dropped, retried = server.conns[0].requests[1], server.conns[1].requests[0]
            assert (retried.head, retried.body) == (dropped.head, dropped.body)

    run(scenario())


# ---------------------------------------------------------------------------- backpressure, pool close


def test_large_body_pauses_the_tls_transport_and_arrives_whole(pki: Pki, run: Run) -> None:
    size, piece = 8 * 1024 * 1024, 64 * 1024
    data = random.Random(8).randbytes(size)

    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        sock = conn.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, piece)  # little kernel buffering on this side
        await conn.send(CHUNKED_HEAD)
        for i in range(0, size, piece):
            await conn.send(chunk(data[i:i + piece]))
        await conn.send(LAST_CHUNK)
        await conn.wait_eof()

    async def scenario() -> None:
        async with serving(handler, pki.server_context("good")) as server, upstream_pool() as pool:
            reply = await post(pool, server.url())
            try:
                conn = reply._conn  # noqa: SLF001
                while not (conn.paused or conn.complete or conn.error):  # nobody reads: each wake-up is
                    await conn.wait(WAIT)                                  # a body piece joining the queue
                assert conn.paused, f"{conn.queued} bytes were read into memory without a pause"
                assert conn.transport is not None and not conn.transport.is_reading()
                buffered = conn.queued
                assert HIGH_WATER < buffered < size // 2
                for _ in range(200):  # the server shares this loop: let it write, and a reader read
                    await asyncio.sleep(0)
                assert conn.paused and conn.queued == buffered, "the paused TLS transport still delivered"
                body = await reply.read()  # reading resumes the transport, to the last byte
                assert len(body) == size and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
                assert not conn.paused and conn.queued == 0
            finally:
                reply.close()

    run(scenario())


def test_pool_close_closes_idle_tls_connections(pki: Pki, run: Run) -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        arrived = asyncio.Event()

        async def handler(conn: ServerConn) -> None:
            while await conn.read_request() is not None:
                if len(conn.server.requests) == 2:
                    arrived.set()
                await release.wait()  # both requests are in flight at once: two connections
                await conn.send(response(b"ok"))

        async with serving(handler, pki.server_context("good")) as server:
            async with upstream_pool() as pool:
                both = asyncio.gather(post_read(pool, server.url()), post_read(pool, server.url()))
                await asyncio.wait_for(arrived.wait(), WAIT)
                release.set()
                assert await both == [b"ok", b"ok"]
                assert len(server.conns) == 2 and not any(c.eof.is_set() for c in server.conns)
            await asyncio.wait_for(asyncio.gather(*(c.eof.wait() for c in server.conns)), WAIT)

    run(scenario())
