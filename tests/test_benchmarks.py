"""The benchmarks still run (with tiny sizes): timing belongs to them, not to the tests."""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import bench_build, bench_call, bench_concurrency, bench_limiter, bench_stream, suite


@pytest.fixture(autouse=True)
def _frozen_heap() -> Iterator[None]:
    # The benchmarks collect garbage before each round; in a test process that holds every earlier
    # test's objects, each collection walks them all. Frozen, they are left out of those walks.
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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
    ratios = bench_build.main(2, rounds=2)  # that it runs and reports, not a measurement
    assert all(ratio > 0 for ratio in ratios)
    assert "build, 1000 models sent again vs dicts" in capsys.readouterr().out


def test_concurrency_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ratios = bench_concurrency.main(10)
    assert len(ratios) == len(bench_concurrency.ASYNC_CONCURRENCY) + len(bench_concurrency.THREADS)
    assert "1000 in flight" in capsys.readouterr().out


def test_the_suite_prints_every_figure_for_three_sides_and_saves_a_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baseline.json"
    assert suite.main(["--quick", "--rounds", "1", "--save", "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    names = ["typed call, async", "stream chunk, sync", "build, 1000 message models, first send",
             "build, 1000 message models, sent again", "loopback CPU, 1000 in flight", "loopback CPU, 32 threads",
             "import + client", "memory, 20 concurrent streams"]  # fmt: skip
    assert all(name in out for name in names)
    scaling = out.splitlines()[-2]  # then the line about the saved baseline
    assert scaling.startswith("deployai's CPU per call over loopback against its own")
    assert re.search(
        r"64 in flight [\d.]+x, 256 in flight [\d.]+x, 1000 in flight [\d.]+x, 32 threads [\d.]+x$", scaling
    )
    saved = json.loads(baseline.read_text())
    # Every timed figure gets a baseline; memory at this tiny size may not (its floor can read 0 MiB),
    # and when it does, either side may have added nothing measurable.
    assert all(saved[name] > 0 for name in names if not name.startswith("memory"))
    assert all(math.isfinite(cost) and cost >= 0 for cost in saved.values())


def test_a_cost_more_than_a_tenth_above_the_baseline_is_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    figures = [
        suite.Figure("steady", "us", {"floor": [10.0], "deployai": [10.9]}),
        suite.Figure("slower", "us", {"floor": [10.0], "deployai": [11.1], "openai": [50.0]}),
        suite.Figure("new", "us", {"floor": [10.0], "deployai": [30.0]}),
    ]
    assert suite.report(figures, {"steady": 1.0, "slower": 1.0}) == ["slower"]
    lines = capsys.readouterr().out.splitlines()
    assert "WORSE" in lines[2]
    assert "WORSE" not in lines[1] + lines[3]
