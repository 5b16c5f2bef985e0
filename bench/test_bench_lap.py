"""Batched linear assignment on the issue's grid, posetr vs a loop of scipy calls.

Run: python -m pytest bench/test_bench_lap.py --benchmark-json=bench/results/lap.json
"""
from posetr.profile import lap

from conftest import IMPLS, bench_case, case_params


@IMPLS
@case_params(lap)
def test_linear_sum_assignment(benchmark, device, case, impl):
    bench_case(benchmark, device, case, impl, rounds=50, iterations=5, warmup_rounds=2)
