"""posetr.ops.linear_sum_assignment against scipy.optimize.linear_sum_assignment.

scipy's own test cases (scipy/optimize/tests/test_linear_assignment.py and the
shared cases of scipy/sparse/csgraph/tests/test_matching.py) are rewritten here
against posetr, followed by index-for-index equality on random problems.
"""
import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from scipy.optimize import linear_sum_assignment as scipy_lsa

from posetr.ops import linear_sum_assignment

INF = float("inf")


def assert_same_as_scipy(cost, maximize=False):
    expected = scipy_lsa(cost, maximize=maximize)
    got = linear_sum_assignment(cost, maximize=maximize)
    for e, g in zip(expected, got):
        assert isinstance(g, np.ndarray) and g.dtype == np.int64
        assert_array_equal(g, e)


# ---- scipy's test_linear_assignment.py, ported --------------------------------


def test_input_shape():
    with pytest.raises(ValueError, match="expected a matrix"):
        linear_sum_assignment([1, 2, 3])


@pytest.mark.parametrize("shape", [(), (2, 2, 2)])
def test_input_not_a_matrix(shape):
    with pytest.raises(ValueError, match=r"expected a matrix \(2-D array\), got a %d-D array" % len(shape)):
        linear_sum_assignment(np.zeros(shape))


def test_input_object():
    C = [[1, 2, 3], [4, 5, 6]]
    assert_array_equal(linear_sum_assignment(C), linear_sum_assignment(np.asarray(C)))
    assert_array_equal(linear_sum_assignment(C), scipy_lsa(C))


def test_input_bool():
    identity = np.identity(3)
    assert_array_equal(linear_sum_assignment(identity.astype(np.bool_)), linear_sum_assignment(identity))
    assert_same_as_scipy(identity.astype(np.bool_), maximize=True)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.float16, np.float32])
def test_input_numeric_dtypes(dtype):
    cost = (np.arange(12).reshape(3, 4) * 7 % 5).astype(dtype)
    assert_same_as_scipy(cost)
    assert_same_as_scipy(cost, maximize=True)


@pytest.mark.parametrize("dtype", [str, object, np.complex128])
def test_input_uncastable(dtype):
    with pytest.raises(TypeError, match="Cannot cast array data"):
        linear_sum_assignment(np.identity(3).astype(dtype))


def test_input_nan():
    with pytest.raises(ValueError, match="^matrix contains invalid numeric entries$"):
        linear_sum_assignment(np.diag([np.nan, 1, 1]))


def test_input_neginf():
    with pytest.raises(ValueError, match="^matrix contains invalid numeric entries$"):
        linear_sum_assignment(np.diag([1, -INF, 1]))


def test_input_inf():
    cost = np.identity(3)
    cost[:, 0] = INF
    with pytest.raises(ValueError, match="^cost matrix is infeasible$"):
        linear_sum_assignment(cost)


def test_maximize_negates_before_the_validity_test():
    # scipy negates first: +inf is invalid under maximize, -inf only forbids.
    with pytest.raises(ValueError, match="invalid numeric entries"):
        linear_sum_assignment([[INF, 1.0]], maximize=True)
    assert_same_as_scipy(np.array([[-INF, 1.0], [2.0, 3.0]]), maximize=True)


def test_constant_cost_matrix():
    # scipy issue #11602: a constant cost gives the identity.
    row_ind, col_ind = linear_sum_assignment(np.ones((8, 8)))
    assert_array_equal(row_ind, np.arange(8))
    assert_array_equal(col_ind, np.arange(8))


@pytest.mark.parametrize("num_rows,num_cols", [(0, 0), (2, 0), (0, 3)])
def test_trivial_cost(num_rows, num_cols):
    row_ind, col_ind = linear_sum_assignment(np.empty((num_cols, num_rows)))
    assert len(row_ind) == 0 and len(col_ind) == 0
    assert row_ind.dtype == np.int64 and col_ind.dtype == np.int64


def test_empty_with_nan_is_not_checked():
    # scipy returns before looking at an empty matrix's entries.
    assert len(linear_sum_assignment(np.full((0, 3), np.nan))[0]) == 0


# The small problems scipy shares between its two solvers (cost, optimal entries).
SMALL_CASES = [
    ([[400, 150, 400], [400, 450, 600], [300, 225, 300]], [150, 400, 300]),
    ([[400, 150, 400, 1], [400, 450, 600, 2], [300, 225, 300, 3]], [150, 2, 300]),
    ([[10, 10, 8], [9, 8, 1], [9, 7, 4]], [10, 1, 7]),
    ([[10, 10, 8, 11], [9, 8, 1, 1], [9, 7, 4, 10]], [10, 1, 4]),
    ([[10, INF, INF], [INF, INF, 1], [INF, 7, INF]], [10, 1, 7]),
]


@pytest.mark.parametrize("sign", [-1, 1])
@pytest.mark.parametrize("case", range(len(SMALL_CASES)))
def test_small_inputs(sign, case):
    cost, expected = SMALL_CASES[case]
    cost, expected = sign * np.array(cost, dtype=float), sign * np.array(expected, dtype=float)
    maximize = sign == -1
    row_ind, col_ind = linear_sum_assignment(cost, maximize=maximize)
    assert_array_equal(row_ind, np.sort(row_ind))
    assert_array_equal(cost[row_ind, col_ind], expected)
    row_ind, col_ind = linear_sum_assignment(cost.T, maximize=maximize)
    assert_array_equal(row_ind, np.sort(row_ind))
    assert_array_equal(np.sort(cost.T[row_ind, col_ind]), np.sort(expected))


def test_sparse_problems_cost_and_feasibility_match_scipy():
    # scipy checks its dense solver against the sparse one on 100 problems of
    # 100 x 100 with 6% finite entries (36 infeasible); here against scipy itself.
    rng = np.random.default_rng(12342309)
    infeasible = 0
    for _ in range(100):
        dense = np.full((100, 100), INF)
        mask = rng.random((100, 100)) < 0.06
        dense[mask] = rng.integers(1, 100, mask.sum())
        try:
            expected = scipy_lsa(dense)
        except ValueError as exc:
            infeasible += 1
            with pytest.raises(ValueError, match=str(exc)):
                linear_sum_assignment(dense)
            continue
        got = linear_sum_assignment(dense)
        assert dense[got].sum() == dense[expected].sum()
        assert_array_equal(got[0], expected[0])
        assert_array_equal(got[1], expected[1])
    assert infeasible > 0


# ---- random problems: same indices as scipy ------------------------------------


def random_cost(rng, n, m, scale=1.0, ties=False, forbid=0.0):
    cost = rng.random((n, m)) * scale
    if ties:
        cost = np.round(cost * 4 / scale)  # small integers: many ties
    if forbid:
        cost[rng.random((n, m)) < forbid] = INF
    return cost


@pytest.mark.parametrize("maximize", [False, True])
def test_random_problems_identical_to_scipy(maximize):
    rng = np.random.default_rng(1 + maximize)
    for trial in range(1500):
        n, m = rng.integers(0, 30, 2)
        scale = 10.0 ** rng.uniform(-3, 3)
        cost = random_cost(rng, n, m, scale, ties=trial % 4 == 0, forbid=0.1 * (trial % 5 == 0) * (not maximize))
        try:
            expected = scipy_lsa(cost, maximize=maximize)
        except ValueError as exc:
            with pytest.raises(ValueError, match=str(exc)):
                linear_sum_assignment(cost, maximize=maximize)
            continue
        got = linear_sum_assignment(cost, maximize=maximize)
        assert_array_equal(got[0], expected[0])
        assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (0, 5), (5, 0), (300, 13), (13, 300), (120, 120), (300, 300)])
def test_shapes_identical_to_scipy(shape):
    rng = np.random.default_rng(sum(shape))
    assert_same_as_scipy(random_cost(rng, *shape))
    assert_same_as_scipy(random_cost(rng, *shape, ties=True))


def test_float32_input_is_solved_like_scipy():
    # scipy widens float32 to float64; posetr computes in float64 too, so float32
    # costs give scipy's answer on the same float32 values.
    rng = np.random.default_rng(3)
    for _ in range(50):
        cost = random_cost(rng, 20, 30).astype(np.float32)
        assert_same_as_scipy(cost)


def test_non_contiguous_and_byteswapped_input():
    rng = np.random.default_rng(4)
    cost = random_cost(rng, 40, 60)
    assert_same_as_scipy(cost[::2, ::3])
    assert_same_as_scipy(cost.T)
    assert_same_as_scipy(cost.astype(">f8"))


# ---- torch tensors in, tensors out ----------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int64, torch.bool])
def test_tensor_input(dtype):
    rng = np.random.default_rng(5)
    cost = torch.from_numpy(random_cost(rng, 9, 6, scale=10.0)).to(dtype)
    row_ind, col_ind = linear_sum_assignment(cost)
    assert isinstance(row_ind, torch.Tensor) and row_ind.dtype == torch.int64 and row_ind.device == cost.device
    expected = scipy_lsa(cost.double().numpy())
    assert_array_equal(row_ind.numpy(), expected[0])
    assert_array_equal(col_ind.numpy(), expected[1])


def test_tensor_errors_and_grad_input():
    with pytest.raises(ValueError, match="expected a matrix"):
        linear_sum_assignment(torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="^matrix contains invalid numeric entries$"):
        linear_sum_assignment(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="^cost matrix is infeasible$"):
        linear_sum_assignment(torch.tensor([[INF, INF], [1.0, 2.0]]))
    cost = torch.rand(4, 5, requires_grad=True)
    assert_array_equal(linear_sum_assignment(cost)[1].numpy(), scipy_lsa(cost.detach().numpy())[1])


@pytest.mark.cuda
def test_tensor_input_cuda():
    rng = np.random.default_rng(6)
    cost = random_cost(rng, 50, 20)
    row_ind, col_ind = linear_sum_assignment(torch.from_numpy(cost).cuda())
    assert row_ind.is_cuda
    expected = scipy_lsa(cost)
    assert_array_equal(row_ind.cpu().numpy(), expected[0])
    assert_array_equal(col_ind.cpu().numpy(), expected[1])
    with pytest.raises(ValueError, match="^cost matrix is infeasible$"):
        linear_sum_assignment(torch.tensor([[INF, INF], [1.0, 2.0]], device="cuda"))
