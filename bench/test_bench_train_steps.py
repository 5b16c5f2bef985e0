"""Every model's training step (the ``posetr.profile`` modules named ``*_step``: PETR-R50 at 1 x 3 x 512 x 512,
TFPose-R50 at 4 x 3 x 256 x 192 with its encoder's MSDA, ...), ops: posetr vs ops: reference.

Run: python -m pytest bench/test_bench_train_steps.py --benchmark-json=bench/results/train_steps.json
(one model: add ``-k petr_step`` or ``-k tfpose``).
"""
import importlib

import pytest

from posetr.profile import step_modules

from conftest import IMPLS, bench_shared_setup, case_params


@pytest.fixture(scope="module")
def inputs():
    return {}


@IMPLS
@case_params(*(importlib.import_module(f"posetr.profile.{name}") for name in step_modules()))
def test_train_step(benchmark, inputs, device, case, impl):
    bench_shared_setup(benchmark, inputs, device, case, impl, rounds=3, warmup_rounds=1)
