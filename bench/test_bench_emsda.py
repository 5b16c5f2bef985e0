"""EMSDA at Poseur's decoder shape, posetr vs repeat + posetr MSDA + einsum.

Run: python -m pytest bench/test_bench_emsda.py --benchmark-json=bench/results/emsda.json
"""
import pytest

from posetr.profile import emsda, synchronize

from conftest import bench_devices

CASES = [(device, case) for device in bench_devices() for case in emsda.cases(device)]


@pytest.mark.parametrize("impl", ["posetr", "reference"])
@pytest.mark.parametrize(
    "device,case", CASES, ids=[f"{d}-{c.shape}-{c.mode}".replace(" ", "_") for d, c in CASES]
)
def test_emsda(benchmark, device, case, impl):
    inputs = case.setup()
    fn = getattr(case, impl)

    def call():
        fn(inputs)
        synchronize(device)

    benchmark.group = f"emsda {device} {case.shape} {case.mode}"
    benchmark.pedantic(call, rounds=3, warmup_rounds=1)
