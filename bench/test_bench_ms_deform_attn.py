"""MSDA at PETR/Poseur shapes, posetr vs the grid_sample reference.

Run: python -m pytest bench/test_bench_ms_deform_attn.py --benchmark-json=bench/results/msda.json
"""
import pytest

from posetr.profile import ms_deform_attn, synchronize

from conftest import bench_devices

CASES = [(device, case) for device in bench_devices() for case in ms_deform_attn.cases(device)]


@pytest.mark.parametrize("impl", ["posetr", "reference"])
@pytest.mark.parametrize(
    "device,case", CASES, ids=[f"{d}-{c.shape}-{c.mode}".replace(" ", "_") for d, c in CASES]
)
def test_ms_deform_attn(benchmark, device, case, impl):
    inputs = case.setup()
    fn = getattr(case, impl)

    def call():
        fn(inputs)
        synchronize(device)

    benchmark.group = f"ms_deform_attn {device} {case.shape} {case.mode}"
    benchmark.pedantic(call, rounds=3, warmup_rounds=1)
