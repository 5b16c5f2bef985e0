"""posetr.ops.batched_linear_sum_assignment and the matcher building block.

Each item must equal scipy.optimize.linear_sum_assignment on its block, padded
with -1; the op must pass torch.library.opcheck; CUDA must equal the CPU.
"""
import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from scipy.optimize import linear_sum_assignment as scipy_lsa

from posetr.models.common.matching import BatchedHungarianMatcher, match
from posetr.ops import assignment_to_pairs, batched_linear_sum_assignment

from conftest import devices

INF = float("inf")


def scipy_batch(cost, num_rows, num_cols, maximize=False):
    """The expected padded (row_ind, col_ind) from a loop of scipy calls."""
    B, N, M = cost.shape
    rows = torch.full((B, min(N, M)), -1, dtype=torch.int64)
    cols = rows.clone()
    for b, block in enumerate(cost.double().cpu().numpy()):
        r, c = scipy_lsa(block[: num_rows[b], : num_cols[b]], maximize=maximize)
        rows[b, : len(r)] = torch.from_numpy(r)
        cols[b, : len(c)] = torch.from_numpy(c)
    return rows, cols


def random_batch(gen, B, N, M, dtype=torch.float64, ties=False):
    scale = 10.0 ** (torch.rand(B, 1, 1, generator=gen, dtype=torch.float64) * 6 - 3)
    cost = torch.rand(B, N, M, generator=gen, dtype=torch.float64)
    cost = torch.round(cost * 4) if ties else cost * scale
    return cost.to(dtype)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("B,N,M", [(64, 12, 7), (64, 7, 12), (32, 20, 20), (8, 300, 13), (4, 1, 9), (4, 9, 1), (3, 0, 4)])
def test_full_blocks_equal_scipy(device, dtype, maximize, B, N, M):
    gen = torch.Generator().manual_seed(B * N + M)
    cost = random_batch(gen, B, N, M, dtype, ties=maximize)  # integer ties under maximize
    row_ind, col_ind = batched_linear_sum_assignment(cost.to(device), maximize=maximize)
    assert row_ind.shape == (B, min(N, M)) and row_ind.dtype == torch.int64 and row_ind.device.type == device
    expected = scipy_batch(cost, [N] * B, [M] * B, maximize)
    assert torch.equal(row_ind.cpu(), expected[0])
    assert torch.equal(col_ind.cpu(), expected[1])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("maximize", [False, True])
def test_thousands_of_padded_items_equal_scipy(device, dtype, maximize):
    # Blocks of every size up to 24 x 18, so float32 items with more rows than columns
    # also cover every remainder of the tiled transpose that loads them (4 x 4 tiles).
    gen = torch.Generator().manual_seed(0)
    B, N, M = 2000, 24, 18
    cost = random_batch(gen, B, N, M, dtype)
    cost[::5] = torch.round(cost[::5] / cost[::5].amax((1, 2), keepdim=True) * 3)  # ties
    num_rows = torch.randint(0, N + 1, (B,), generator=gen)
    num_cols = torch.randint(0, M + 1, (B,), generator=gen)
    num_rows[:3], num_cols[:3] = torch.tensor([0, N, 1]), torch.tensor([M, 0, 1])  # empty and 1x1 items
    row_ind, col_ind = batched_linear_sum_assignment(
        cost.to(device), num_rows.to(device), num_cols.to(device), maximize=maximize
    )
    expected = scipy_batch(cost, num_rows.tolist(), num_cols.tolist(), maximize)
    assert torch.equal(row_ind.cpu(), expected[0])
    assert torch.equal(col_ind.cpu(), expected[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("row,col", [(0, 0), (5, 2), (9, 3), (2, 6), (10, 6)])
def test_invalid_entry_found_anywhere_in_a_transposed_block(dtype, row, col):
    # A 11 x 7 block is solved transposed: (row, col) hits a full tile, the column
    # remainder, the row remainder and the corner of the tiled load.
    cost = torch.rand(2, 11, 7, dtype=dtype)
    cost[1, row, col] = float("nan")
    with pytest.raises(ValueError, match=r"cost\[1\]: matrix contains invalid numeric entries"):
        batched_linear_sum_assignment(cost)
    cost[1, row, col] = -INF
    with pytest.raises(ValueError, match=r"cost\[1\]: matrix contains invalid numeric entries"):
        batched_linear_sum_assignment(cost)
    cost[1, row, col] = INF  # invalid only under maximize
    with pytest.raises(ValueError, match=r"cost\[1\]: matrix contains invalid numeric entries"):
        batched_linear_sum_assignment(cost, maximize=True)


def test_padding_outside_the_block_is_ignored():
    gen = torch.Generator().manual_seed(1)
    cost = random_batch(gen, 3, 10, 6)
    padded = cost.clone()
    padded[0, 4:] = float("nan")
    padded[1, :, 2:] = -INF
    rows, cols = [4, 10, 10], [6, 2, 6]
    got = batched_linear_sum_assignment(padded, rows, cols)
    expected = scipy_batch(cost, rows, cols)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize("device", devices())
def test_forbidden_pairs(device):
    gen = torch.Generator().manual_seed(2)
    cost = random_batch(gen, 50, 15, 15)
    cost[torch.rand(cost.shape, generator=gen) < 0.3] = INF
    got = batched_linear_sum_assignment(cost.to(device), return_status=True)
    for b in range(50):
        try:
            r, c = scipy_lsa(cost[b].numpy())
        except ValueError:
            assert int(got[2][b]) == 2 and bool((got[0][b] == -1).all())
            continue
        assert int(got[2][b]) == 0
        assert_array_equal(got[0][b].cpu().numpy(), r)
        assert_array_equal(got[1][b].cpu().numpy(), c)


def test_errors_name_the_item():
    cost = torch.rand(3, 4, 4, dtype=torch.float64)
    cost[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^cost\[1\]: matrix contains invalid numeric entries$"):
        batched_linear_sum_assignment(cost)
    cost[1, 0, 0] = 1.0
    cost[2, :, 0] = INF
    cost[2, :, 1] = INF
    with pytest.raises(ValueError, match=r"^cost\[2\]: cost matrix is infeasible$"):
        batched_linear_sum_assignment(cost)
    with pytest.raises(ValueError, match="invalid numeric entries"):
        batched_linear_sum_assignment(torch.full((1, 2, 2), INF), maximize=True)
    row_ind, col_ind, status = batched_linear_sum_assignment(cost, return_status=True)
    assert status.tolist() == [0, 0, 2]
    assert (row_ind[2] == -1).all() and (col_ind[2] == -1).all()


def test_argument_errors():
    with pytest.raises(ValueError, match=r"cost must be a 3-D tensor"):
        batched_linear_sum_assignment(torch.rand(4, 4))
    with pytest.raises(ValueError, match=r"num_rows\[1\] must be in \[0, 4\]"):
        batched_linear_sum_assignment(torch.rand(2, 4, 5), num_rows=[4, 5])
    with pytest.raises(ValueError, match=r"num_cols\[0\] must be in \[0, 5\]"):
        batched_linear_sum_assignment(torch.rand(2, 4, 5), num_cols=[-1, 5])
    with pytest.raises(ValueError, match=r"num_cols.size\(0\) must be 2"):
        batched_linear_sum_assignment(torch.rand(2, 4, 5), num_cols=[1, 2, 3])
    with pytest.raises(ValueError, match=r"num_rows must be Long"):
        batched_linear_sum_assignment(torch.rand(2, 4, 5), num_rows=torch.tensor([1, 2], dtype=torch.int32))
    with pytest.raises(TypeError, match="cost must be a torch.Tensor"):
        batched_linear_sum_assignment(np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match=r"num_rows must be Long \(integer sizes\), got Float"):
        batched_linear_sum_assignment(torch.rand(2, 4, 5), num_rows=torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="real"):
        batched_linear_sum_assignment(torch.zeros(1, 2, 2, dtype=torch.complex64))


@pytest.mark.parametrize("sizes", [[1.9, 2.7], [2.0, 3.0], np.array([1.5, 2.0]), [True, False], [[1, 2]], ["1", "2"]])
def test_non_integer_sizes_are_refused_not_truncated(sizes):
    # [1.9, 2.7] once became [1, 2] silently.
    with pytest.raises(ValueError, match="num_rows must"):
        batched_linear_sum_assignment(torch.rand(2, 4, 5), num_rows=sizes)
    with pytest.raises(ValueError, match="num_cols must"):
        batched_linear_sum_assignment(torch.rand(2, 4, 5), num_cols=sizes)


def test_integer_size_sequences_of_any_integer_type():
    cost = torch.rand(2, 4, 5, dtype=torch.float64)
    expected = scipy_batch(cost, [3, 4], [5, 2])
    for rows, cols in [([3, 4], (5, 2)), (np.array([3, 4], dtype=np.int32), np.array([5, 2], dtype=np.uint8))]:
        got = batched_linear_sum_assignment(cost, num_rows=rows, num_cols=cols)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    row_ind, _ = batched_linear_sum_assignment(torch.rand(0, 4, 5), num_rows=[], num_cols=())
    assert row_ind.shape == (0, 4)


def test_empty_batch_and_dims():
    for shape in [(0, 5, 5), (3, 0, 5), (3, 5, 0)]:
        row_ind, col_ind = batched_linear_sum_assignment(torch.rand(shape))
        assert row_ind.shape == (shape[0], min(shape[1:]))


def test_non_contiguous_and_other_dtypes():
    gen = torch.Generator().manual_seed(3)
    base = random_batch(gen, 6, 30, 20)
    for cost in (base.transpose(1, 2), base[:, ::2, ::3], base[::2]):
        got = batched_linear_sum_assignment(cost)
        expected = scipy_batch(cost, [cost.shape[1]] * cost.shape[0], [cost.shape[2]] * cost.shape[0])
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    ints = torch.randint(0, 5, (4, 6, 6), generator=gen)
    got = batched_linear_sum_assignment(ints)
    expected = scipy_batch(ints.double(), [6] * 4, [6] * 4)
    assert torch.equal(got[1], expected[1])
    half = base.half()
    assert torch.equal(batched_linear_sum_assignment(half)[1], batched_linear_sum_assignment(half.float())[1])


def test_integer_costs_with_ties_give_scipys_total():
    # Exact equality is expected even with ties (same steps, same order); the
    # contract only promises the optimal total.
    gen = torch.Generator().manual_seed(4)
    cost = torch.randint(0, 3, (200, 9, 12), generator=gen).double()
    row_ind, col_ind = batched_linear_sum_assignment(cost)
    for b in range(200):
        r, c = scipy_lsa(cost[b].numpy())
        assert cost[b][row_ind[b], col_ind[b]].sum() == cost[b].numpy()[r, c].sum()
        assert_array_equal(col_ind[b].numpy(), c)


def test_float32_and_float64_agree_on_float32_values():
    # Both solve in float64; float32 costs are widened exactly, as scipy does.
    gen = torch.Generator().manual_seed(5)
    cost = random_batch(gen, 100, 20, 15, torch.float32)
    a = batched_linear_sum_assignment(cost)
    b = batched_linear_sum_assignment(cost.double())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_opcheck():
    gen = torch.Generator().manual_seed(6)
    op = torch.ops.posetr.batched_linear_sum_assignment.default
    cost = random_batch(gen, 4, 7, 5)
    for args in [
        (cost, None, None, False, True),
        (cost.float(), torch.tensor([7, 3, 0, 5]), torch.tensor([5, 5, 2, 1]), True, True),
        (cost.transpose(1, 2), None, torch.tensor([1, 2, 3, 7]), False, False),
    ]:
        torch.library.opcheck(op, args)


def test_torch_compile_fullgraph():
    gen = torch.Generator().manual_seed(7)
    cost = random_batch(gen, 3, 8, 5)
    fn = torch.compile(lambda c: batched_linear_sum_assignment(c), fullgraph=True, backend="aot_eager")
    got = fn(cost)
    expected = batched_linear_sum_assignment(cost)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_assignment_to_pairs():
    row_ind = torch.tensor([[0, 2, -1], [-1, -1, -1], [0, 1, 2]])
    col_ind = torch.tensor([[1, 0, -1], [-1, -1, -1], [2, 0, 1]])
    for counts in (None, [2, 0, 3]):
        pairs = assignment_to_pairs(row_ind, col_ind, counts)
        assert [p[0].tolist() for p in pairs] == [[0, 2], [], [0, 1, 2]]
        assert [p[1].tolist() for p in pairs] == [[1, 0], [], [2, 0, 1]]


@pytest.mark.parametrize("device", devices())
def test_match_is_detrs_matcher(device):
    gen = torch.Generator().manual_seed(8)
    Q, G_max = 30, 6
    counts = [6, 0, 2, 4]
    cost = random_batch(gen, len(counts), Q, G_max, torch.float32).to(device)
    for num_targets in (counts, torch.tensor(counts)):
        pairs = match(cost, num_targets)
        assert len(pairs) == len(counts)
        for b, (i, j) in enumerate(pairs):
            r, c = scipy_lsa(cost[b, :, : counts[b]].cpu().numpy())  # DETR's per-image call
            assert i.dtype == torch.int64 and i.device.type == device
            assert_array_equal(i.cpu().numpy(), r)
            assert_array_equal(j.cpu().numpy(), c)
    assert [p[0].tolist() for p in BatchedHungarianMatcher()(cost, counts)] == [p[0].tolist() for p in pairs]
    with pytest.raises(ValueError, match="one count per image"):
        match(cost, [1, 2])


def test_match_more_targets_than_queries():
    cost = torch.rand(2, 3, 5)
    pairs = match(cost, [5, 4])
    for b, n in enumerate([5, 4]):
        r, c = scipy_lsa(cost[b, :, :n].numpy())
        assert_array_equal(pairs[b][0].numpy(), r)
        assert_array_equal(pairs[b][1].numpy(), c)


@pytest.mark.cuda
def test_cuda_reports_failures_without_raising():
    cost = torch.rand(3, 4, 4, device="cuda", dtype=torch.float64)
    cost[0, 0, 0] = float("nan")
    cost[1, :, :2] = INF
    row_ind, col_ind, status = batched_linear_sum_assignment(cost, return_status=True)
    assert status.tolist() == [1, 2, 0]
    assert (row_ind[:2] == -1).all()
    bad_sizes = batched_linear_sum_assignment(cost[2:], num_rows=torch.tensor([9], device="cuda"), return_status=True)
    assert bad_sizes[2].tolist() == [3]


@pytest.mark.cuda
def test_cuda_large_items_use_the_global_workspace():
    # max(N, M) = 3000 needs more than 48 KiB of state per item.
    gen = torch.Generator().manual_seed(9)
    cost = random_batch(gen, 2, 3000, 6)
    got = batched_linear_sum_assignment(cost.cuda())
    expected = scipy_batch(cost, [3000] * 2, [6] * 2)
    assert torch.equal(got[0].cpu(), expected[0]) and torch.equal(got[1].cpu(), expected[1])


def test_eager_fast_path_equals_the_dispatched_op():
    # Plain CPU tensors skip the dispatcher (posetr._C.batched_linear_sum_assignment_cpu).
    from posetr import _C

    gen = torch.Generator().manual_seed(10)
    cost = random_batch(gen, 5, 9, 4)
    sizes = torch.tensor([9, 0, 3, 9, 1]), torch.tensor([4, 4, 2, 1, 0])
    op = torch.ops.posetr.batched_linear_sum_assignment.default
    fast = _C.batched_linear_sum_assignment_cpu(cost, *sizes, True, False)
    for a, b in zip(fast, op(cost, *sizes, True, False)):
        assert torch.equal(a, b)
    checked = _C.batched_linear_sum_assignment_cpu(cost, *sizes, True, True)
    assert torch.equal(checked[1], fast[1]) and checked[2] is None  # checked: no failures, no status
    with pytest.raises(ValueError, match="must be a 3-D tensor"):
        _C.batched_linear_sum_assignment_cpu(cost[0], None, None, False, True)
