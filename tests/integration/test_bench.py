"""scripts/bench runs end to end on a tiny setting (the figures come from real runs, not
from this test: it checks the benchmark works and that billing stayed exact under it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--json", str(out), "--db-dir",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    res = json.loads(out.read_text())
    assert res["audit_ok"] is True
    assert [r["concurrency"] for r in res["nonstream"]] == [1, 4]
    for row in res["nonstream"]:
        assert row["relayed_rps"] > 0 and row["direct_rps"] > 0 and row["errors"] == 0
        assert row["relayed_p50_ms"] <= row["relayed_p90_ms"] <= row["relayed_p99_ms"]
        assert row["cpu_s_per_1000"] > 0
        if res["machine"]["database_fs"] not in ("tmpfs", ""):  # tmpfs pages are never written back
            # each relayed request commits a hold and a settlement: the WAL takes pages
            assert row["disk_kb_per_request"] > 0.5
    assert all(r["errors"] == 0 and r["relayed_ttfb_p50_ms"] > 0 for r in res["stream"])
    assert res["open_loop"]["errors"] == 0
    assert res["memory"]["streams_opened"] == res["memory"]["streams"]
    assert 0 < res["memory"]["idle_rss_mb"] <= res["memory"]["peak_rss_mb"]
    assert "non-stream (closed loop)" in run.stdout and "memory:" in run.stdout
    # the machine line says where the database was, and each target is judged from the figures
    assert res["machine"]["database_dir"] == str(tmp_path.resolve()) and res["machine"]["upstream_core"] == "relay"
    assert res["machine"]["database_page_size"] == 1024 and "1024-byte pages" in run.stdout
    targets = {t["target"]: t for t in res["targets"]}
    idle = targets["idle RSS"]
    assert idle["measured"] == res["memory"]["idle_rss_mb"] and idle["met"] == (idle["measured"] <= 60)
    c1 = targets["added latency p50, concurrency 1"]
    assert c1["met"] == (res["nonstream"][0]["added_p50_ms"] <= 0.5)
    assert "targets" in run.stdout and ("met " in run.stdout or "MISS" in run.stdout)
