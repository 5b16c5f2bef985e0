"""Batched linear assignment on the issue's grid, posetr vs a loop of scipy calls,
and vs ``lapx.lapjvr_batch`` when lapx is installed (``pip install -e ".[bench]"``).

Run: python -m pytest bench/test_bench_lap.py --benchmark-json=bench/results/lap.json
"""
import pytest

from posetr.profile import lap

from conftest import IMPLS, bench_case, case_params


@IMPLS
@case_params(lap)
def test_linear_sum_assignment(benchmark, device, case, impl):
    bench_case(benchmark, device, case, impl, rounds=50, iterations=5, warmup_rounds=2)


@case_params(lap)
def test_linear_sum_assignment_lapx(benchmark, device, case):
    pytest.importorskip("lap", reason="lapx is not installed")
    bench_case(benchmark, device, case, "lapx", fn=lap.lapx_batched, rounds=50, iterations=5, warmup_rounds=2)
