"""python -m bench runs end to end at tiny sizes; no timing is checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_runs_every_benchmark_small(database_url: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "appends,catchup,import,realtime,queries",
            "--scale",
            "0.01",
            "--seconds",
            "0.3",
            "--database-url",
            database_url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "FAILED" not in result.stderr
    assert "commands/s" in result.stdout
    assert "catch-up over" in result.stdout
    assert "JSONL transitions" in result.stdout
    assert "realtime latency p99" in result.stdout
    assert "get_statistics" in result.stdout
