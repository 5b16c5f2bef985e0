"""OKS at PETR's sizes (matching cost 600 x 26 x 17, loss on 600 pairs), posetr vs PyTorch ops.

Run: python -m pytest bench/test_bench_oks.py --benchmark-json=bench/results/oks.json
"""
from posetr.profile import oks

from conftest import IMPLS, bench_case, case_params


@IMPLS
@case_params(oks)
def test_oks(benchmark, device, case, impl):
    # posetr's calls take tens to hundreds of microseconds: more rounds than the other ops.
    bench_case(benchmark, device, case, impl, rounds=30, iterations=2, warmup_rounds=5)
