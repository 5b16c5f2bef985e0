"""PETR-R50 training step (1 x 3 x 512 x 512), ops: posetr vs ops: reference.

Run: python -m pytest bench/test_bench_petr_step.py --benchmark-json=bench/results/petr_step.json
"""
import pytest

from posetr.profile import petr_step, synchronize

from conftest import bench_devices

CASES = [(device, case) for device in bench_devices() for case in petr_step.cases(device)]


@pytest.fixture(scope="module")
def inputs():
    return {}


@pytest.mark.parametrize("impl", ["posetr", "reference"])
@pytest.mark.parametrize("device,case", CASES, ids=[d for d, _ in CASES])
def test_petr_step(benchmark, inputs, device, case, impl):
    if device not in inputs:  # both impls share one setup (two R50 models)
        inputs[device] = case.setup()
    fn = getattr(case, impl)

    def call():
        fn(inputs[device])
        synchronize(device)

    benchmark.group = f"petr_step {device} {case.shape}"
    benchmark.pedantic(call, rounds=3, warmup_rounds=1)
