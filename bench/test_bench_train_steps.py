"""PETR-R50 training step (1 x 3 x 512 x 512), ops: posetr vs ops: reference.

Run: python -m pytest bench/test_bench_petr_step.py --benchmark-json=bench/results/petr_step.json
"""
import pytest

from posetr.profile import petr_step

from conftest import IMPLS, bench_case, case_params


@pytest.fixture(scope="module")
def inputs():
    return {}


@IMPLS
@case_params(petr_step)
def test_petr_step(benchmark, inputs, device, case, impl):
    if device not in inputs:  # both impls share one setup (two R50 models)
        inputs[device] = case.setup()
    bench_case(benchmark, device, case, impl, inputs=inputs[device], rounds=3, warmup_rounds=1)
