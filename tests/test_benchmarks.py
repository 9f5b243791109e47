"""The benchmarks still run (with tiny sizes): timing belongs to them, not to the tests."""

from __future__ import annotations

import pytest

from benchmarks import bench_build, bench_call, bench_limiter, bench_stream


def test_call_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ratios = bench_call.main(20)
    assert all(ratio > 0 for ratio in ratios)
    assert "typed call, async" in capsys.readouterr().out


def test_stream_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ratios = bench_stream.main(20)
    assert all(ratio > 0 for ratio in ratios)
    assert "typed stream chunks, async" in capsys.readouterr().out


def test_limiter_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ratios = bench_limiter.main(20)
    assert all(ratio > 0 for ratio in ratios)
    assert "calls through a limiter, async" in capsys.readouterr().out


def test_build_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ratios = bench_build.main(2)
    assert all(ratio > 0 for ratio in ratios)
    assert "build, 1000 models vs dicts" in capsys.readouterr().out
