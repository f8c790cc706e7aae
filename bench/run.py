"""scripts/bench: relayed vs direct calls to a fast fake upstream, in the same run.

Starts the fake upstream and ``relaykit serve`` (billing, ledger and request logs ON: the
figures are for the real product), then alternates direct and relayed rounds:
non-stream closed loop at several concurrencies (wrk when installed, else the asyncio
generator), streams (time to first byte and total), an open-loop run at a fixed rate,
and memory (idle RSS, RSS while holding many slow streams).  On a machine with two or
more cores relaykit is pinned to core 0 and the load generator to core 1.  The fast fake
upstream shares relaykit's core by default (``--upstream-core relay``): then a direct
call and a relayed call each cross between the cores once per round trip, and "added"
is relaykit's own cost, not the price of a second cross-core wake-up, which on a VM is
tens of microseconds.  Its CPU is taken from relaykit's core, so the relayed throughput
is, if anything, understated.  ``--upstream-core load`` puts it beside the load
generator instead.  Prints a table with the targets of the speed issue and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .load import Result, closed_loop, hold_streams, open_loop

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"model":"bench","messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
STREAM_BODY = b'{"model":"bench","stream":true,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
WRK_LUA = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
done = function(summary, latency, requests)
  io.write(string.format('BENCH {"requests": %d, "seconds": %f, "errors": %d, "p50": %f, "p90": %f, "p99": %f}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
"""


def filesystem(path: Path) -> str:
    """The file system type under ``path`` (from /proc/mounts; "" where unknown)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return ""
    target = str(path.resolve())
    best = ("", "")
    for fields in mounts:
        if len(fields) >= 3 and (target == fields[1] or target.startswith(fields[1].rstrip("/") + "/")):
            if len(fields[1]) > len(best[0]):
                best = (fields[1], fields[2])
    return best[1]


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pin(cmd: list[str], core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return cmd
    return ["taskset", "-c", str(core), *cmd]


def start(cmd: list[str], pattern: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(pattern, line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit(f"bench: {' '.join(cmd[:4])} did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def written_bytes(pid: int) -> int | None:
    """Bytes the process has sent toward the disk (page-cache writes included): the WAL and
    the checkpoints.  None where /proc/PID/io cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] * 1000


def summarise(res: Result) -> dict[str, float]:
    return {"rps": res.count / res.elapsed if res.elapsed else 0.0, "p50": pct(res.latencies, 50),
            "p90": pct(res.latencies, 90), "p99": pct(res.latencies, 99), "ttfb_p50": pct(res.ttfb, 50),
            "ttfb_p99": pct(res.ttfb, 99), "errors": res.errors, "count": res.count}


def wrk_round(url: str, key: str, concurrency: int, seconds: float, core: int | None) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA)
    env = {**os.environ, "BENCH_KEY": key, "BENCH_BODY": BODY.decode()}
    out = subprocess.run(pin(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", "-s", f.name, url], core),
                         capture_output=True, text=True, env=env, timeout=seconds + 30).stdout
    os.unlink(f.name)
    m = re.search(r"BENCH (\{.*\})", out)
    if not m:
        raise SystemExit(f"bench: wrk gave no result:\n{out}")
    r = json.loads(m.group(1))
    return {"rps": r["requests"] / r["seconds"], "p50": r["p50"], "p90": r["p90"], "p99": r["p99"],
            "errors": r["errors"], "count": r["requests"]}


def setup_relay(tmp: Path, upstream: str) -> tuple[Path, str]:
    from relaykit.store import accounts, billing
    from relaykit.store.store import Store
    cfg = tmp / "bench.yaml"
    cfg.write_text(f"""
server: {{drain_seconds: 2}}
database: {{url: "sqlite:///{tmp}/bench.db"}}
groups: {{default: {{ratio: 1}}}}
models: {{bench: {{input: 0.5, output: 1.5}}}}
channels:
  - {{name: bench, type: openai, base_url: "{upstream}", keys: ["sk-bench-upstream-key-0000"], models: [bench]}}
""")
    store = Store(f"sqlite:///{tmp}/bench.db")
    store.migrate()

    def make(t: Any) -> str:
        u = accounts.create_user(t, "bench")
        billing.topup(t, "bench", 10**15)
        _, key = accounts.create_token(t, user_id=u.id, name="bench", quota=None, expires_at=None, group=None,
                                       models=[], ips=[], rpm=None, tpm=None)
        return key
    return cfg, store.tx(make)


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench")
    ap.add_argument("--quick", action="store_true", help="a tiny run that checks the bench works end to end")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each closed-loop round")
    ap.add_argument("--rounds", type=int, default=2, help="direct/relayed rounds per setting")
    ap.add_argument("--streams", type=int, default=5000, help="slow streams held for the memory figure")
    ap.add_argument("--rate", type=float, default=1000.0, help="open-loop arrival rate (requests/s)")
    ap.add_argument("--json", default="bench-results.json", help="where to write the JSON figures")
    ap.add_argument("--db-dir", default=None,
                    help="where the benchmark's SQLite database lives (default: the system's temp dir); "
                         "the disk under it shapes the tail latencies")
    ap.add_argument("--upstream-core", choices=("relay", "load"), default="relay",
                    help="the core the fast fake upstream runs on (see the module docstring)")
    args = ap.parse_args()
    try:  # thousands of held streams need as many sockets: raise the soft limit to the hard one
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    if args.quick:
        args.seconds, args.rounds, args.streams, args.rate = 1.0, 1, 50, 100.0
    conc_json = [1, 4] if args.quick else [1, 16, 64, 256]
    conc_stream = [1, 4] if args.quick else [1, 16, 256]
    ncores = cores()  # before this process pins itself below
    two = ncores >= 2
    relay_core, load_core = (0, 1) if two else (None, None)
    upstream_core = relay_core if args.upstream_core == "relay" else load_core
    if load_core is not None and hasattr(os, "sched_setaffinity"):
        # this process is the asyncio load generator (streams, open loop, held streams):
        # it belongs on the load core too, never beside relaykit (children are pinned by taskset)
        os.sched_setaffinity(0, {load_core})
    use_wrk = shutil.which("wrk") is not None and not args.quick
    py = sys.executable
    procs: list[subprocess.Popen[str]] = []
    results: dict[str, Any] = {"machine": {"cores": ncores, "pinned": two, "load_generator": "wrk" if use_wrk
                                           else "asyncio", "upstream_core": args.upstream_core,
                                           "database_dir": str(Path(args.db_dir or tempfile.gettempdir()).resolve()),
                                           "database_fs": filesystem(Path(args.db_dir or tempfile.gettempdir()))},
                               "nonstream": [], "stream": []}
    tmp = Path(tempfile.mkdtemp(prefix="relaykit-bench-", dir=args.db_dir))
    try:
        up, up_url = start(pin([py, "-m", "bench.upstream", "--chunks", "20"], upstream_core), r"listening on (\S+)")
        procs.append(up)
        slow, slow_url = start(pin([py, "-m", "bench.upstream", "--chunks", "30", "--interval", "1"], load_core),
                               r"listening on (\S+)")
        procs.append(slow)
        cfg, key = setup_relay(tmp, up_url)
        with sqlite3.connect(tmp / "bench.db") as db:  # the page size decides how much each commit writes
            results["machine"]["database_page_size"] = db.execute("PRAGMA page_size").fetchone()[0]
        env = {**os.environ, "RELAYKIT_DATA_DIR": str(tmp)}
        relay, relay_url = start(pin([py, "-m", "relaykit", "serve", "--config", str(cfg), "--port", "0"], relay_core),
                                 r"listening on (\S+)", env)
        procs.append(relay)
        time.sleep(0.5)
        results["memory"] = {"idle_rss_mb": round(rss_mb(relay.pid), 1)}
        direct = up_url + "/v1/chat/completions"
        relayed = relay_url + "/v1/chat/completions"

        for c in conc_json:
            rows = []
            cpu_used = 0.0
            disk: int | None = 0
            relayed_count = 0
            for _ in range(args.rounds):
                if use_wrk:
                    d = wrk_round(direct, key, c, args.seconds, load_core)
                    c0, w0 = cpu_seconds(relay.pid), written_bytes(relay.pid)
                    r = wrk_round(relayed, key, c, args.seconds, load_core)
                else:
                    n = max(50, int(200 * args.seconds)) if args.quick else int(2000 * args.seconds)
                    d = summarise(asyncio.run(closed_loop(direct, BODY, key, concurrency=c, requests=n)))
                    c0, w0 = cpu_seconds(relay.pid), written_bytes(relay.pid)
                    r = summarise(asyncio.run(closed_loop(relayed, BODY, key, concurrency=c, requests=n)))
                cpu_used += cpu_seconds(relay.pid) - c0
                w1 = written_bytes(relay.pid)
                disk = None if disk is None or w0 is None or w1 is None else disk + w1 - w0
                relayed_count += int(r["count"])
                rows.append((d, r))
            med = lambda k, i: statistics.median(row[i][k] for row in rows)  # noqa: E731
            results["nonstream"].append({
                "concurrency": c, "direct_rps": med("rps", 0), "relayed_rps": med("rps", 1),
                "ratio": med("rps", 1) / med("rps", 0) if med("rps", 0) else 0.0,
                "direct_p50_ms": med("p50", 0), "relayed_p50_ms": med("p50", 1),
                "relayed_p90_ms": med("p90", 1), "relayed_p99_ms": med("p99", 1), "direct_p99_ms": med("p99", 0),
                "added_p50_ms": statistics.median(r["p50"] - d["p50"] for d, r in rows),
                "added_p99_ms": statistics.median(r["p99"] - d["p99"] for d, r in rows),
                "cpu_s_per_1000": 1000 * cpu_used / relayed_count if relayed_count else 0.0,
                "disk_kb_per_request": disk / 1024 / relayed_count if disk is not None and relayed_count else None,
                "errors": sum(int(r["errors"]) for _, r in rows)})

        for c in conc_stream:
            n = 50 if args.quick else max(200, c * 4)
            rows2 = []
            for _ in range(args.rounds):
                d = summarise(asyncio.run(closed_loop(direct, STREAM_BODY, key, concurrency=c, requests=n)))
                r = summarise(asyncio.run(closed_loop(relayed, STREAM_BODY, key, concurrency=c, requests=n)))
                rows2.append((d, r))
            results["stream"].append({
                "concurrency": c,
                "direct_ttfb_p50_ms": statistics.median(d["ttfb_p50"] for d, _ in rows2),
                "relayed_ttfb_p50_ms": statistics.median(r["ttfb_p50"] for _, r in rows2),
                "added_ttfb_p50_ms": statistics.median(r["ttfb_p50"] - d["ttfb_p50"] for d, r in rows2),
                "direct_total_p50_ms": statistics.median(d["p50"] for d, _ in rows2),
                "relayed_total_p50_ms": statistics.median(r["p50"] for _, r in rows2),
                "relayed_total_p99_ms": statistics.median(r["p99"] for _, r in rows2),
                "errors": sum(int(r["errors"]) for _, r in rows2)})

        # alternating rounds, medians: one stall of the machine (a VM's disk, a neighbour)
        # queues a whole second of arrivals behind it and would decide a single run's p99
        seconds = 1.0 if args.quick else 5.0
        rows3 = []
        for _ in range(args.rounds):
            d = summarise(asyncio.run(open_loop(direct, BODY, key, rate=args.rate, seconds=seconds)))
            r = summarise(asyncio.run(open_loop(relayed, BODY, key, rate=args.rate, seconds=seconds)))
            rows3.append((d, r))
        med3 = lambda k, i: statistics.median(row[i][k] for row in rows3)  # noqa: E731
        results["open_loop"] = {"rate": args.rate, "rounds": args.rounds, "seconds_per_round": seconds,
                                "direct_p50_ms": med3("p50", 0), "direct_p99_ms": med3("p99", 0),
                                "relayed_p50_ms": med3("p50", 1), "relayed_p99_ms": med3("p99", 1),
                                "p99_gap_ms": statistics.median(r["p99"] - d["p99"] for d, r in rows3),
                                "relayed_p99_each_ms": [round(r["p99"], 2) for _, r in rows3],
                                "errors": sum(int(r["errors"]) for _, r in rows3)}

        # memory while holding slow streams through relaykit to the dripping upstream
        slow_cfg = cfg.read_text().replace(up_url, slow_url)
        cfg.write_text(slow_cfg)
        relay.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        peak = [0.0]

        async def hold() -> int:
            task = asyncio.ensure_future(hold_streams(relayed, STREAM_BODY, key, count=args.streams,
                                                      hold_for=1.5 if args.quick else 10.0))
            while not task.done():
                peak[0] = max(peak[0], rss_mb(relay.pid))
                await asyncio.sleep(0.2)
            return task.result()
        opened = asyncio.run(hold())
        results["memory"].update({"streams": args.streams, "streams_opened": opened,
                                  "rss_with_streams_mb": round(peak[0], 1),
                                  "peak_rss_mb": round(rss_mb(relay.pid, "VmHWM"), 1)})
        audit = subprocess.run([py, "-m", "relaykit", "audit", "--config", str(cfg), "--json"], capture_output=True,
                               text=True, env=env)
        results["audit_ok"] = audit.returncode == 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    results["targets"] = targets(results)
    Path(args.json).write_text(json.dumps(results, indent=2))
    report(results)
    return 0 if results.get("audit_ok") else 1


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed issue's targets next to what this run measured."""
    by_c = {r["concurrency"]: r for r in res["nonstream"]}
    st = {r["concurrency"]: r for r in res["stream"]}
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, unit: str, at_least: bool = False) -> None:
        if value is None:
            return
        ok = value >= limit if at_least else value <= limit
        out.append({"target": name, "measured": round(value, 3), "limit": limit, "unit": unit, "met": ok,
                    "kind": "at least" if at_least else "at most"})
    c1, c64 = by_c.get(1), by_c.get(64)
    add("added latency p50, concurrency 1", c1 and c1["added_p50_ms"], 0.5, "ms")
    add("added latency p99, concurrency 1", c1 and c1["added_p99_ms"], 1.5, "ms")
    add("throughput, concurrency 64, one process", c64 and c64["relayed_rps"], 2000, "req/s", at_least=True)
    add("p99 / p50, concurrency 64", c64 and c64["relayed_p99_ms"] / max(c64["relayed_p50_ms"], 1e-9), 2.0, "x")
    add("stream time to first byte added, concurrency 1", st.get(1) and st[1]["added_ttfb_p50_ms"], 0.5, "ms")
    o = res.get("open_loop")
    add(f"open loop at {o['rate']:.0f}/s: p99 minus direct p99" if o else "", o and o["p99_gap_ms"], 3.0, "ms")
    mem = res.get("memory", {})
    add("idle RSS", mem.get("idle_rss_mb"), 60, "MB")
    add(f"RSS holding {mem.get('streams')} slow streams", mem.get("rss_with_streams_mb"), 500, "MB")
    return out


def report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"machine: {m['cores']} cores, relaykit pinned apart from the load: {m['pinned']}, "
          f"load generator: {m['load_generator']}, fake upstream on the {m['upstream_core']} core, "
          f"database in {m['database_dir']} ({m['database_fs'] or 'unknown fs'}, "
          f"{m['database_page_size']}-byte pages)")
    print("\nnon-stream (closed loop)")
    print(f"{'conc':>5} {'direct r/s':>11} {'relayed r/s':>12} {'ratio':>6} {'p50':>7} {'p90':>7} {'p99':>7} "
          f"{'added p50':>10} {'added p99':>10} {'cpu s/1k':>9} {'disk KB/req':>12}")
    for r in res["nonstream"]:
        print(f"{r['concurrency']:>5} {r['direct_rps']:>11.0f} {r['relayed_rps']:>12.0f} {r['ratio']:>6.2f} "
              f"{r['relayed_p50_ms']:>7.2f} {r['relayed_p90_ms']:>7.2f} {r['relayed_p99_ms']:>7.2f} "
              f"{r['added_p50_ms']:>10.2f} {r['added_p99_ms']:>10.2f} {r['cpu_s_per_1000']:>9.3f} "
              f"{'?' if r['disk_kb_per_request'] is None else format(r['disk_kb_per_request'], '.1f'):>12}")
    print("\nstream")
    print(f"{'conc':>5} {'ttfb direct':>12} {'ttfb relayed':>13} {'added':>7} {'total p50':>10} {'total p99':>10}")
    for r in res["stream"]:
        print(f"{r['concurrency']:>5} {r['direct_ttfb_p50_ms']:>12.2f} {r['relayed_ttfb_p50_ms']:>13.2f} "
              f"{r['added_ttfb_p50_ms']:>7.2f} {r['relayed_total_p50_ms']:>10.2f} {r['relayed_total_p99_ms']:>10.2f}")
    o = res["open_loop"]
    print(f"\nopen loop at {o['rate']:.0f}/s ({o['rounds']} x {o['seconds_per_round']:g} s, medians): direct p99 "
          f"{o['direct_p99_ms']:.2f} ms, relayed p99 {o['relayed_p99_ms']:.2f} ms (gap {o['p99_gap_ms']:.2f} ms; "
          f"each round {o['relayed_p99_each_ms']}), errors {o['errors']}")
    mem = res["memory"]
    print(f"memory: idle {mem['idle_rss_mb']} MB; {mem['streams_opened']}/{mem['streams']} slow streams held at "
          f"{mem['rss_with_streams_mb']} MB; peak {mem['peak_rss_mb']} MB")
    print(f"audit after the run: {'ok' if res['audit_ok'] else 'FAILED'}")
    print("\ntargets")
    for t in res.get("targets", []):
        print(f"  {'met ' if t['met'] else 'MISS'}  {t['target']}: {t['measured']:g} {t['unit']} "
              f"({t['kind']} {t['limit']:g})")


if __name__ == "__main__":
    sys.exit(main())
