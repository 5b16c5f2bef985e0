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
    """Drop-in for ``scipy.optimize.linear_sum_assignment`` (same contract, same answers).

    Args:
        cost_matrix (array_like | Tensor[n, m]): the cost of assigning row i to column j.
            ``+inf`` forbids a pair. bool, integer and floating types are accepted.
        maximize (bool): maximise the total cost instead of minimising it.

    Returns:
        (row_ind, col_ind): ``min(n, m)`` int64 indices, ``row_ind`` ascending, such that
        ``cost_matrix[row_ind, col_ind].sum()`` is optimal. NumPy arrays for array-like
        input; tensors on the input's device for a tensor.

    Raises:
        ValueError: "expected a matrix (2-D array), got a {d}-D array"; "matrix contains
            invalid numeric entries" (NaN, or -inf; +inf when ``maximize``); "cost
            matrix is infeasible" (no complete matching of finite cost).
        TypeError: a dtype that cannot be cast safely to float64 (strings, complex, object).

    A CUDA tensor is solved on the GPU; reporting an error then waits for the result.
    """
    if isinstance(cost_matrix, torch.Tensor):
        return _solve_tensor(cost_matrix, maximize)
    cost = np.asarray(cost_matrix)
    if cost.ndim != 2:
        raise ValueError(f"expected a matrix (2-D array), got a {cost.ndim}-D array")
    if cost.dtype != np.float64 and cost.dtype != np.float32:
        if not np.can_cast(cost.dtype, np.float64, casting="safe"):
            raise TypeError(f"Cannot cast array data from {cost.dtype!r} to dtype('float64') according to the rule 'safe'")
        cost = cost.astype(np.float64)
    if not cost.dtype.isnative:
        cost = cost.astype(cost.dtype.newbyteorder("="))
    row_ind, col_ind, _ = _solve(torch.from_numpy(cost).unsqueeze(0), None, None, maximize, True)
    return row_ind[0].numpy(), col_ind[0].numpy()


def _solve_tensor(cost, maximize):
    if cost.dim() != 2:
        raise ValueError(f"expected a matrix (2-D array), got a {cost.dim()}-D array")
    if cost.dtype not in _SOLVED_DTYPES:
        cost = _as_float(cost)
    row_ind, col_ind, status = _solve(cost.detach().unsqueeze(0), None, None, maximize, True)
    if cost.is_cuda:
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
