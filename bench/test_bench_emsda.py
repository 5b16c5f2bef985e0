"""EMSDA at Poseur's decoder shape, posetr vs repeat + posetr MSDA + einsum.

Run: python -m pytest bench/test_bench_emsda.py --benchmark-json=bench/results/emsda.json
"""
from posetr.profile import emsda

from conftest import IMPLS, bench_case, case_params


@IMPLS
@case_params(emsda)
def test_emsda(benchmark, device, case, impl):
    bench_case(benchmark, device, case, impl, rounds=3, warmup_rounds=1)
