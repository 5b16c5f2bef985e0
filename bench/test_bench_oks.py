"""OKS at PETR's sizes (matching cost 600 x 26 x 17, loss on 600 pairs), posetr vs PyTorch ops.

Run: python -m pytest bench/test_bench_oks.py --benchmark-json=bench/results/oks.json
"""
import pytest

from posetr.profile import oks, synchronize

from conftest import bench_devices

CASES = [(device, case) for device in bench_devices() for case in oks.cases(device)]


@pytest.mark.parametrize("impl", ["posetr", "reference"])
@pytest.mark.parametrize(
    "device,case", CASES, ids=[f"{d}-{c.op}-{c.shape}-{c.mode}".replace(" ", "_") for d, c in CASES]
)
def test_oks(benchmark, device, case, impl):
    inputs = case.setup()
    fn = getattr(case, impl)

    def call():
        fn(inputs)
        synchronize(device)

    benchmark.group = f"oks {device} {case.op} {case.shape} {case.mode}"
    # posetr's calls take tens to hundreds of microseconds: more rounds than the other ops.
    benchmark.pedantic(call, rounds=30, iterations=2, warmup_rounds=5)
