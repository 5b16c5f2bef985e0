"""Linear sum assignment (Hungarian matching): scipy's solver, batched, on CPU or CUDA.

``torch.ops.posetr.batched_linear_sum_assignment`` runs scipy's algorithm (Crouse's
shortest augmenting path, as in ``scipy.optimize.linear_sum_assignment``) on every
item of a ``[B, N, M]`` batch in one call: in C++ over the batch on the CPU, one warp
per item on CUDA. Every step is scipy's, in float64 and in scipy's order (float32
costs are widened exactly as scipy widens them), so the indices are scipy's, ties
included.
"""
import numpy as np
import torch

from posetr._ext import HAS_EXTENSION, warn_fallback

if HAS_EXTENSION:
    from posetr import _C as posetr_C

__all__ = ["linear_sum_assignment", "batched_linear_sum_assignment", "assignment_to_pairs", "LAP_STATUS"]

# status codes of the op (csrc/lap/lap_math.h).
LAP_STATUS = {0: "ok", 1: "invalid numeric entries", 2: "infeasible", 3: "size out of range"}
_MESSAGES = {1: "matrix contains invalid numeric entries", 2: "cost matrix is infeasible"}
_SOLVED_DTYPES = (torch.float32, torch.float64)



def _scipy_op(cost, num_rows, num_cols, maximize, check):
    """The op's contract with a loop of scipy calls: the fallback without posetr._C."""
    from scipy.optimize import linear_sum_assignment as scipy_lsa

    warn_fallback("batched_linear_sum_assignment")
    B, N, M = cost.shape
    rows = [N] * B if num_rows is None else num_rows.tolist()
    cols = [M] * B if num_cols is None else num_cols.tolist()
    row_ind = torch.full((B, min(N, M)), -1, dtype=torch.int64)
    col_ind = row_ind.clone()
    status = torch.zeros(B, dtype=torch.int32)
    for b, block in enumerate(cost.detach().cpu().double().numpy()):
        try:
            r, c = scipy_lsa(block[: rows[b], : cols[b]], maximize=maximize)
        except ValueError as exc:
            if check:
                raise ValueError(str(exc) if B == 1 else f"cost[{b}]: {exc}") from None
            status[b] = 1 if "invalid" in str(exc) else 2
            continue
        row_ind[b, : len(r)] = torch.from_numpy(r)
        col_ind[b, : len(c)] = torch.from_numpy(c)
    return row_ind.to(cost.device), col_ind.to(cost.device), status.to(cost.device)


_op = torch.ops.posetr.batched_linear_sum_assignment.default if HAS_EXTENSION else _scipy_op
# The CPU kernel without the dispatcher (csrc/lap/lap_cpu.cpp): for plain CPU
# tensors in eager mode it saves most of the per-call cost on small batches.
_cpu_kernel = getattr(posetr_C, "batched_linear_sum_assignment_cpu", None) if HAS_EXTENSION else None


def _solve(cost, num_rows, num_cols, maximize, check):
    """The op, or for plain CPU tensors in eager mode its kernel without the dispatcher
    (whose status is None when ``check``: every item succeeded or it raised)."""
    if (
        _cpu_kernel is not None
        and not torch.compiler.is_compiling()
        and type(cost) is torch.Tensor
        and cost.is_cpu
        and not _torch_function_mode_enabled()
        and not _len_dispatch_stack()
    ):
        return _cpu_kernel(cost, num_rows, num_cols, maximize, check)
    return _op(cost, num_rows, num_cols, maximize, check)


_torch_function_mode_enabled = torch._C._is_torch_function_mode_enabled
_len_dispatch_stack = torch._C._len_torch_dispatch_stack


def batched_linear_sum_assignment(cost, num_rows=None, num_cols=None, maximize=False, return_status=False):
    """Solves ``scipy.optimize.linear_sum_assignment`` for every item of a batch.

    Item b is the block ``cost[b, :num_rows[b], :num_cols[b]]``; its answer is
    scipy's for that block: ``min(num_rows[b], num_cols[b])`` pairs, rows ascending.

    Args:
        cost (Tensor[B, N, M]): float32 or float64, CPU or CUDA, any strides
            (float16/bfloat16 are widened to float32, integers and bool to float64).
            ``+inf`` forbids a pair; NaN, or ``-inf`` (``+inf`` when ``maximize``), is invalid.
        num_rows (Tensor[B] int64 | sequence of B ints | None): valid rows per item (default N);
            floating or bool sizes are refused, not truncated.
        num_cols (Tensor[B] int64 | sequence of B ints | None): valid columns per item (default M).
        maximize (bool): maximise the total instead of minimising it.
        return_status (bool): also return the per-item status ``Tensor[B]`` int32
            (0 ok, 1 invalid entries, 2 infeasible, 3 size out of range; see ``LAP_STATUS``).

    Returns:
        (row_ind, col_ind): ``Tensor[B, min(N, M)]`` int64 on ``cost``'s device, item b
        holding scipy's ``(row_ind, col_ind)`` for its block followed by -1
        (all -1 for a failed item). ``(row_ind, col_ind, status)`` if ``return_status``.

    Raises:
        ValueError: ``cost`` not 3-D; sizes of the wrong shape or of a non-integer dtype. On the CPU
            (unless ``return_status``) also for the first failed item b:
            "cost[b]: matrix contains invalid numeric entries" or "cost[b]: cost matrix
            is infeasible" (no prefix when B == 1), and for a size outside [0, N] / [0, M].
        TypeError: ``cost`` not a tensor, or complex.

    CUDA: the call never synchronises with the host, so it cannot raise for a
    failed item; such items come back as -1 and their status says why (check it
    with ``return_status=True`` when the costs may be infeasible or contain NaN).
    """
    if not isinstance(cost, torch.Tensor):
        raise TypeError(f"cost must be a torch.Tensor [B, N, M], got {type(cost).__name__}")
    if cost.dtype not in _SOLVED_DTYPES:
        cost = _as_float(cost)
    num_rows = _sizes_tensor(num_rows, "num_rows", cost.device)
    num_cols = _sizes_tensor(num_cols, "num_cols", cost.device)
    # check: the CPU kernel raises for a failed item; CUDA never does (no sync).
    row_ind, col_ind, status = _solve(cost, num_rows, num_cols, maximize, not return_status)
    if return_status:
        return row_ind, col_ind, status
    return row_ind, col_ind


def _sizes_tensor(sizes, name, device):
    """Per-item sizes given as a sequence (list, tuple, NumPy array) as an int64 tensor: integers
    only, so that 1.9 is refused instead of truncated to 1. A tensor is passed on as it is (the op
    requires int64); None stays None."""
    if sizes is None or isinstance(sizes, torch.Tensor):
        return sizes
    if isinstance(sizes, (list, tuple)) and all(type(size) is int for size in sizes):  # the common case, fast
        return torch.as_tensor(sizes, dtype=torch.int64, device=device)
    try:
        values = torch.as_tensor(sizes, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a sequence of integer sizes, one per batch item: {exc}") from None
    if values.numel() > 0 and (values.dtype == torch.bool or values.is_floating_point() or values.is_complex()):
        raise ValueError(f"{name} must hold integer sizes, got {values.dtype} values {values.tolist()}")
    return values.to(torch.int64)


def _as_float(cost):
    if cost.is_complex():
        raise TypeError(f"cost must be real, got {cost.dtype}")
    if cost.is_floating_point():
        return cost.float()
    return cost.double()


def assignment_to_pairs(row_ind, col_ind, counts=None):
    """DETR's matcher output from :func:`batched_linear_sum_assignment`'s result.

    Args:
        row_ind, col_ind (Tensor[B, K] int64): padded with -1.
        counts (list[int] | None): pairs of each item, ``min(num_rows[b], num_cols[b])``;
            counted from ``row_ind`` when None (a host synchronisation on CUDA).

    Returns:
        list of B ``(index_i, index_j)`` int64 tensors on ``row_ind``'s device.
    """
    if counts is None:
        counts = (row_ind >= 0).sum(1).tolist()
    return [(row_ind[b, :k], col_ind[b, :k]) for b, k in enumerate(counts)]


def linear_sum_assignment(cost_matrix, maximize=False):
    """Drop-in for ``scipy.optimize.linear_sum_assignment``: scipy's types, answers and errors.

    Everything scipy accepts is converted as scipy converts it (to a float64 matrix, by
    ``PyArray_ContiguousFromAny``) and gives scipy's result: lists, NumPy arrays of any
    layout (negative strides, Fortran order, byte-swapped, read-only, masked or matrix
    subclasses) and any dtype that casts safely to float64 (bool, integers, float16,
    float32), CPU torch tensors. CUDA tensors, which scipy refuses, are solved on the GPU.

    Args:
        cost_matrix (array_like | Tensor[n, m]): the cost of assigning row i to column j.
            ``+inf`` forbids a pair.
        maximize (bool): maximise the total cost instead of minimising it (any object,
            taken by its truth value as scipy does).

    Returns:
        (row_ind, col_ind): ``min(n, m)`` indices, ``row_ind`` ascending, such that
        ``cost_matrix[row_ind, col_ind].sum()`` is optimal: new C-contiguous int64 NumPy
        arrays, as scipy returns (also for a CPU tensor), or int64 tensors on the device
        of a CUDA tensor.

    Raises:
        ValueError: "expected a matrix (2-D array), got a {ndim} array"; "matrix contains
            invalid numeric entries" (NaN, or -inf; +inf when ``maximize``); "cost
            matrix is infeasible" (no complete matching of finite cost); NumPy's errors
            for input it cannot turn into numbers (ragged lists, strings).
        TypeError: an array dtype that does not cast safely to float64 (complex, object,
            str, datetime, long double), NumPy's conversion errors (a bfloat16 tensor).
        RuntimeError: a CPU tensor that requires grad (``Tensor.numpy()``'s error, as in scipy).

    A CUDA tensor is solved on the GPU; reporting an error then waits for the result.
    """
    maximize = bool(maximize)
    if isinstance(cost_matrix, torch.Tensor) and cost_matrix.is_cuda:
        return _solve_cuda(cost_matrix, maximize)
    if _solvable_as_is(cost_matrix):
        cost = cost_matrix[None]
    else:
        cost = torch.from_numpy(_as_scipy_matrix(cost_matrix)[None])
    row_ind, col_ind, _ = _solve(cost, None, None, maximize, True)
    # Arrays of their own, as scipy's (not views of the kernel's [1, K] outputs).
    return row_ind.numpy()[0].copy(), col_ind.numpy()[0].copy()


def _solvable_as_is(obj):
    """True for a CPU tensor matrix that scipy's np.asarray(obj, dtype=float64) would turn into the
    same values without an error (a plain float32/float64 tensor, no grad, no lazy negation): the
    kernel solves it directly (widening float32 exactly, as that cast does) and skips the copy.
    DETR's matcher passes such tensors."""
    return (
        type(obj) is torch.Tensor
        and obj.dtype in _SOLVED_DTYPES
        and obj.dim() == 2
        and obj.is_cpu
        and not obj.requires_grad
        and not obj.is_neg()
    )


def _as_scipy_matrix(obj):
    """The 2-D float32/float64 array that torch.from_numpy takes as is, holding the values scipy
    solves for ``obj``, with scipy's errors. scipy converts with PyArray_ContiguousFromAny(obj,
    NPY_DOUBLE, 0, 0): an ndarray is cast under the 'safe' rule, anything else (lists, tensors
    through ``__array__``) by ``np.asarray(obj, dtype=float64)``; then the rank is checked.
    float32 is kept: the kernel widens it exactly, as scipy's cast does."""
    if isinstance(obj, np.ndarray):
        cost = np.asarray(obj)  # the base class: masked arrays give their data, as in scipy
        if cost.dtype != np.float64 and cost.dtype != np.float32:
            if not np.can_cast(cost.dtype, np.float64, casting="safe"):
                raise TypeError(
                    f"Cannot cast array data from {cost.dtype!r} to dtype('float64') according to the rule 'safe'"
                )
            cost = cost.astype(np.float64)  # byte-swapped float64 too
    else:
        cost = np.asarray(obj, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"expected a matrix (2-D array), got a {cost.ndim} array")
    # torch.from_numpy refuses negative strides (even on a 1-row matrix, which NumPy calls
    # contiguous) and strides that are not whole elements, and warns about read-only arrays:
    # copy those (and misaligned ones) first.
    row_stride, col_stride = cost.strides
    size, flags = cost.itemsize, cost.flags
    whole_steps = row_stride >= 0 and col_stride >= 0 and row_stride % size == 0 and col_stride % size == 0
    if not (whole_steps and flags.writeable and flags.aligned):
        cost = cost.copy()
    return cost


def _solve_cuda(cost, maximize):
    if cost.dim() != 2:
        raise ValueError(f"expected a matrix (2-D array), got a {cost.dim()} array")
    if cost.dtype not in _SOLVED_DTYPES:
        cost = _as_float(cost)
    row_ind, col_ind, status = _solve(cost.detach().unsqueeze(0), None, None, maximize, True)
    code = int(status[0])  # synchronises: scipy's contract raises here
    if code:
        raise ValueError(_MESSAGES.get(code, LAP_STATUS.get(code)))
    return row_ind[0], col_ind[0]


if HAS_EXTENSION:

    @torch.library.register_fake("posetr::batched_linear_sum_assignment")
    def _batched_linear_sum_assignment_fake(cost, num_rows, num_cols, maximize, check):
        torch._check(cost.dim() == 3, lambda: f"cost must be a 3-D tensor [B, N, M], got {tuple(cost.shape)}")
        B, N, M = cost.shape
        K = torch.sym_min(N, M)
        index = cost.new_empty((B, K), dtype=torch.int64)
        return index, torch.empty_like(index), cost.new_empty((B,), dtype=torch.int32)
