"""POET's matching step, README batch (12 images, N = 50 and 25, 0..20 people): posetr's batched cost +
one LAP call vs the official per-target loop + scipy per image.

Run: python -m pytest bench/test_bench_poet_match.py --benchmark-json=bench/results/poet_match.json
"""
from posetr.profile import poet_match

from conftest import IMPLS, bench_case, case_params


@IMPLS
@case_params(poet_match)
def test_poet_match(benchmark, device, case, impl):
    bench_case(benchmark, device, case, impl, rounds=20, iterations=1, warmup_rounds=2)
