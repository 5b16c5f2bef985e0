"""posetr.ops.linear_sum_assignment against scipy.optimize.linear_sum_assignment.

scipy's own test cases (scipy/optimize/tests/test_linear_assignment.py and the
shared cases of scipy/sparse/csgraph/tests/test_matching.py) are rewritten here
against posetr, followed by index-for-index equality on random problems.
"""
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from scipy.optimize import linear_sum_assignment as scipy_lsa

from posetr.ops import linear_sum_assignment

INF = float("inf")


def assert_same_as_scipy(cost, maximize=False):
    """posetr's answer is scipy's: the same exception (type and message), or a tuple of two
    arrays of scipy's type, dtype, layout and values."""
    try:
        expected = scipy_lsa(cost, maximize=maximize)
    except Exception as exc:  # noqa: BLE001 - any exception scipy raises must be ours too
        with pytest.raises(type(exc)) as info:
            linear_sum_assignment(cost, maximize=maximize)
        assert type(info.value) is type(exc) and str(info.value) == str(exc)
        return
    got = linear_sum_assignment(cost, maximize=maximize)
    assert type(got) is tuple and len(got) == 2
    for e, g in zip(expected, got):
        assert type(g) is np.ndarray and g.dtype == e.dtype == np.int64 and g.ndim == 1
        for flag in ("C_CONTIGUOUS", "OWNDATA", "WRITEABLE", "ALIGNED"):
            assert g.flags[flag] == e.flags[flag], flag
        assert_array_equal(g, e)


# ---- scipy's test_linear_assignment.py, ported --------------------------------


def test_input_shape():
    with pytest.raises(ValueError, match="expected a matrix"):
        linear_sum_assignment([1, 2, 3])


@pytest.mark.parametrize("shape", [(), (3,), (2, 2, 2)])
def test_input_not_a_matrix(shape):
    with pytest.raises(ValueError, match=r"^expected a matrix \(2-D array\), got a %d array$" % len(shape)):
        linear_sum_assignment(np.zeros(shape))
    assert_same_as_scipy(np.zeros(shape))


def test_input_object():
    C = [[1, 2, 3], [4, 5, 6]]
    assert_array_equal(linear_sum_assignment(C), linear_sum_assignment(np.asarray(C)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        assert_array_equal(linear_sum_assignment(C), linear_sum_assignment(np.matrix(C)))
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


# ---- scipy's contract for everything scipy accepts (and refuses) ---------------------------------


def _layouts(cost):
    """The same matrix in every layout and container scipy takes."""
    yield "C order", cost
    yield "Fortran order", np.asfortranarray(cost)
    yield "rows reversed", cost[::-1]
    yield "columns reversed", cost[:, ::-1]
    yield "both reversed, strided", np.repeat(cost, 2, axis=1)[::-1, ::-2]
    yield "transposed view", np.ascontiguousarray(cost.T).T
    yield "read-only", np.lib.stride_tricks.as_strided(cost, writeable=False)
    yield "byte-swapped", cost.astype(cost.dtype.newbyteorder())
    yield "misaligned", np.frombuffer(b"\0" + cost.astype(np.float64).tobytes(), np.float64, cost.size, 1).reshape(
        cost.shape
    )
    yield "list", cost.tolist()
    yield "tuple of tuples", tuple(map(tuple, cost.tolist()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix is discouraged, scipy still takes it
        matrix = np.matrix(cost)
    yield "matrix", matrix
    yield "masked", np.ma.masked_array(cost, mask=cost > 1)
    yield "CPU tensor", torch.from_numpy(np.ascontiguousarray(cost))
    yield "CPU tensor transposed", torch.from_numpy(np.ascontiguousarray(cost.T)).T


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("maximize", [False, True])
def test_every_layout_and_dtype_gives_scipys_answer(dtype, maximize):
    rng = np.random.default_rng(7)
    for n, m in [(6, 9), (9, 6), (1, 4), (5, 5), (0, 3)]:
        cost = (rng.random((n, m)) * (2 if dtype == np.bool_ else 50)).astype(dtype)
        for name, layout in _layouts(cost):
            try:
                assert_same_as_scipy(layout, maximize=maximize)
            except AssertionError as exc:
                raise AssertionError(f"{name}, {n}x{m}: {exc}") from exc


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                                   torch.int16, torch.uint8, torch.bool, torch.complex64])
def test_cpu_tensors_give_what_scipy_gives(dtype):
    # scipy takes a CPU tensor through np.asarray: NumPy arrays out (opera's assigner does
    # torch.from_numpy(row_ind)), NumPy's and torch's conversion errors (bfloat16) as they are.
    rng = np.random.default_rng(8)
    cost = torch.from_numpy(rng.random((7, 5)) * 10).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)  # complex: both discard the imaginary part
        assert_same_as_scipy(cost)
        assert_same_as_scipy(cost.T, maximize=True)


@pytest.mark.parametrize(
    "cost",
    [
        torch.rand(4, 5, requires_grad=True),  # RuntimeError: Can't call numpy() on Tensor that requires grad
        torch.rand(3, 3)._neg_view(),  # RuntimeError: ... negative bit set
        torch.zeros(2, 2, device="meta"),  # TypeError: can't convert meta device type tensor to numpy
        torch.zeros(2, 2, 2),
        torch.zeros(3),
        torch.tensor(1.0),
        torch.tensor([[float("nan"), 1.0]]),
        torch.tensor([[INF, INF], [1.0, 2.0]]),
    ],
    ids=["requires grad", "negative bit", "meta", "3-D", "1-D", "0-D", "nan", "infeasible"],
)
def test_tensor_errors_are_scipys(cost):
    assert_same_as_scipy(cost)


@pytest.mark.parametrize(
    "cost",
    [
        None,
        3.0,
        "abc",
        [[1, 2], [3]],
        [],
        [[]],
        np.array([[1 + 1j, 2]]),
        np.array([[1, 2]], dtype=object),
        np.array([["a", "b"]]),
        np.array([[1, 2]], dtype="datetime64[s]"),
        np.array([[1, 2]], dtype=np.longdouble),
        np.zeros((2, 0, 3)),
        np.full((0, 3), np.nan),
        np.array([[-INF, 1.0], [2.0, 3.0]]),
    ],
    ids=["None", "scalar", "str", "ragged", "empty list", "empty rows", "complex", "object", "str array", "datetime",
         "longdouble", "empty 3-D", "empty with nan", "-inf"],
)
@pytest.mark.parametrize("maximize", [False, True])
def test_odd_inputs_give_scipys_answer_or_error(cost, maximize):
    assert_same_as_scipy(cost, maximize=maximize)


@pytest.mark.parametrize("maximize", [1, "yes", np.True_, None, 0, []])
def test_maximize_is_taken_by_truth_value(maximize):
    assert_same_as_scipy(np.array([[4.0, 1, 3], [2, 0, 5], [3, 2, 2]]), maximize=maximize)


def test_random_inputs_of_every_layout_identical_to_scipy():
    rng = np.random.default_rng(9)
    for trial in range(60):
        n, m = rng.integers(1, 25, 2)
        cost = random_cost(rng, n, m, 10.0 ** rng.uniform(-3, 3), ties=trial % 3 == 0)
        for _, layout in _layouts(cost):
            assert_same_as_scipy(layout, maximize=bool(trial % 2))


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
