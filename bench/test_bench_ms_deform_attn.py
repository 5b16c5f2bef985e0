"""MSDA at PETR/Poseur shapes, posetr vs the grid_sample reference.

Run: python -m pytest bench/test_bench_ms_deform_attn.py --benchmark-json=bench/results/msda.json
"""
from posetr.profile import ms_deform_attn

from conftest import IMPLS, bench_case, case_params


@IMPLS
@case_params(ms_deform_attn)
def test_ms_deform_attn(benchmark, device, case, impl):
    bench_case(benchmark, device, case, impl, rounds=3, warmup_rounds=1)
