"""TFPose-R50 training step (4 x 3 x 256 x 192 crops) and one encoder layer's MSDA, ops: posetr vs reference.

Run: python -m pytest bench/test_bench_tfpose_step.py --benchmark-json=bench/results/tfpose_step.json
"""
import pytest

from posetr.profile import tfpose_step

from conftest import IMPLS, bench_shared_setup, case_params


@pytest.fixture(scope="module")
def inputs():
    return {}


@IMPLS
@case_params(tfpose_step)
def test_tfpose_step(benchmark, inputs, device, case, impl):
    bench_shared_setup(benchmark, inputs, device, case, impl, rounds=3, warmup_rounds=1)
