"""Linear-assignment profile cases: the issue's grid, posetr vs a loop of scipy calls.

Grid: B in {2, 8, 32} images, N in {25, 100, 300} queries, M in {1, 5, 13, 30}
people, float32 costs (DETR-style matching at PETR/POET sizes), then 208 problems of
300 x 100 (the GPU target: <= 1 ms on an H100). The reference is
what DETR's matcher does per image: ``scipy.optimize.linear_sum_assignment`` on a
CPU copy of each cost block; posetr solves the batch in one call. ``lapx_batched`` is
an optional third column for bench/ (``pip install lapx``). Bytes moved
(posetr.profile.pass_bytes): reads the costs, writes row_ind, col_ind (int64) and status
(int32). The solver is bound by its serial augmenting-path searches, not by memory, so
that column is small by nature.
"""
import torch
from scipy.optimize import linear_sum_assignment as scipy_lsa

from posetr.ops.lap import batched_linear_sum_assignment
from posetr.profile import Case, pass_bytes, tensor_bytes

BATCHES = (2, 8, 32)
QUERIES = (25, 100, 300)
PEOPLE = (1, 5, 13, 30)
# (B, N, M) beyond the grid.
LARGE = [(208, 300, 100)]
QUICK = [(2, 7, 3), (3, 4, 9)]


def make_cost(B, N, M, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(B, N, M, generator=gen).to(device)


def posetr_batched(cost):
    return batched_linear_sum_assignment(cost)


def scipy_loop(cost):
    blocks = cost.cpu().numpy()
    return [scipy_lsa(block) for block in blocks]


def lapx_batched(cost):
    """``lapx.lapjvr_batch`` (the ``lap`` module of the optional ``lapx`` package) on a CPU
    copy of the batch, with torch's thread count: the issue's other CPU baseline. It solves
    the same problems (not always with scipy's indices on ties) and does not check for NaN."""
    import lap

    return lap.lapjvr_batch(
        cost.cpu().numpy(), extend_cost=True, return_cost=False, n_threads=torch.get_num_threads()
    )


def bytes_moved(cost):
    B, N, M = cost.shape
    return pass_bytes(tensor_bytes(cost), B * min(N, M) * 2 * 8 + B * 4)


def cases(device, quick=False, batches=BATCHES, queries=QUERIES, people=PEOPLE):
    sizes = QUICK if quick else [(B, N, M) for B in batches for N in queries for M in people] + LARGE
    return [
        Case(
            op="linear_sum_assignment",
            shape=f"B={B} N={N} M={M}",
            mode="batched fp32",
            reference_name="scipy loop",
            setup=lambda B=B, N=N, M=M: make_cost(B, N, M, device),
            posetr=posetr_batched,
            reference=scipy_loop,
            bytes_moved=bytes_moved,
        )
        for B, N, M in sizes
    ]
