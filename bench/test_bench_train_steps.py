"""One training step per model: PETR-R50 (1 x 3 x 512 x 512, ops: posetr vs ops: reference) and POET-R50
(2 x 3 x 512 x 512, posetr's matcher vs the official per-target loop + scipy).

Run: python -m pytest bench/test_bench_train_steps.py --benchmark-json=bench/results/train_steps.json
(``-k petr_step`` / ``-k poet_step`` for one model)
"""
import pytest

from posetr.profile import petr_step, poet_step

from conftest import IMPLS, bench_case, case_params


@pytest.fixture(scope="module")
def inputs():
    return {}


@IMPLS
@case_params(petr_step)
def test_petr_step(benchmark, inputs, device, case, impl):
    _bench_shared(benchmark, inputs, device, case, impl)


@IMPLS
@case_params(poet_step)
def test_poet_step(benchmark, inputs, device, case, impl):
    _bench_shared(benchmark, inputs, device, case, impl)


def _bench_shared(benchmark, inputs, device, case, impl):
    key = (case.op, device)
    if key not in inputs:  # both impls share one setup (R50 models)
        inputs[key] = case.setup()
    bench_case(benchmark, device, case, impl, inputs=inputs[key], rounds=3, warmup_rounds=1)
