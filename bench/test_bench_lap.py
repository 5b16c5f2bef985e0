"""Batched linear assignment on the issue's grid, posetr vs a loop of scipy calls.

Run: python -m pytest bench/test_bench_lap.py --benchmark-json=bench/results/lap.json
"""
import pytest

from posetr.profile import lap, synchronize

from conftest import bench_devices

CASES = [(device, case) for device in bench_devices() for case in lap.cases(device)]


@pytest.mark.parametrize("impl", ["posetr", "reference"])
@pytest.mark.parametrize("device,case", CASES, ids=[f"{d}-{c.shape}".replace(" ", "_") for d, c in CASES])
def test_linear_sum_assignment(benchmark, device, case, impl):
    inputs = case.setup()
    fn = getattr(case, impl)

    def call():
        fn(inputs)
        synchronize(device)

    benchmark.group = f"linear_sum_assignment {device} {case.shape}"
    benchmark.pedantic(call, rounds=50, iterations=5, warmup_rounds=2)
