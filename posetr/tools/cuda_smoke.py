"""Calls every CUDA kernel of posetr, forward and backward, once at small real shapes: the program
``tools/gpu_check.sh`` runs under ``compute-sanitizer --tool memcheck`` and ``--tool racecheck``.

    compute-sanitizer --tool memcheck --error-exitcode 99 python3 -m posetr.tools.cuda_smoke
    python -m posetr.tools.cuda_smoke --device cpu     # the same calls on the CPU kernels
    python -m posetr.tools.cuda_smoke --list           # the calls, one a line

Every kernel and every dtype it is compiled for: MSDA and EMSDA sampling forward and backward
(float64, float32, float16, bfloat16; Poseur's and PETR's level shapes, samples outside the map
and on its border, a channel count that leaves lanes idle, an empty level, an empty batch),
batched linear assignment (float32, float64; tall and wide batches of padded items, an invalid,
an infeasible and a bad-size item, maximize, an item too large for shared memory, an empty
batch), OKS pairwise (batched and not) and the OKS loss forward and backward (every dtype,
people without labels and of zero area, no pairs).

Each call builds its inputs on the CPU from a fixed seed, runs them on ``--device``, and
synchronises, so that an asynchronous fault is reported at the call that caused it. On CUDA it
then runs the same inputs on the CPU kernels and compares every output and gradient (integers
exactly, floats relative to the largest magnitude; tolerances in ``TOLERANCE``).
Exit status: 0 when every call ran (and matched), 1 otherwise.
"""
import argparse
import sys
import traceback
from dataclasses import dataclass
from typing import Callable

import torch

from posetr.ops import batched_linear_sum_assignment, emsda, ms_deform_attn, oks_loss, pairwise_oks
from posetr.profile import emsda as emsda_profile
from posetr.profile import ms_deform_attn as msda_profile
from posetr.profile import oks as oks_profile

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
# Largest |device - CPU| over the largest |CPU| of each output: summation order differs
# (warp reductions, atomics), half/bfloat16 round each output once.
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}
POSEUR_LEVELS = msda_profile.POSEUR_LEVELS
PETR_LEVELS = msda_profile.PETR_LEVELS
SMALL_LEVELS = [(7, 9), (0, 3), (3, 5)]  # the middle level is empty


@dataclass
class SmokeCall:
    """``make()`` builds CPU inputs; ``run(*inputs)`` returns {name: tensor} of outputs and gradients.
    ``cuda_only``: the CPU kernels raise where the CUDA ones report (no CPU run, no comparison);
    ``expected``: {name: tensor} the outputs must equal instead."""

    name: str
    make: Callable[[], tuple]
    run: Callable[..., dict]
    cuda_only: bool = False
    expected: dict = None


def _leaf(t):
    return t.detach().requires_grad_(True)


def _grad_like(out, seed):
    return torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)


def _spread(locations, lo=-0.15, hi=1.15):
    """Locations stretched over [lo, hi] (some samples outside the map), every 7th on the border (0 or 1)."""
    out = locations * (hi - lo) + lo
    flat = out.view(-1)
    flat[::7] = torch.arange(flat[::7].numel()).remainder(2).to(flat)
    return out


def sampling_inputs(N, levels, Lq, M, D, P, dtype, seed):
    value, shapes, starts, locations, weights = msda_profile.make_inputs(
        N, levels, Lq, M, D, P, "cpu", dtype=torch.float64, seed=seed)
    return value.to(dtype), shapes, starts, _spread(locations).to(dtype), weights.to(dtype)


def _msda_run(value, shapes, starts, locations, weights):
    value, locations, weights = _leaf(value), _leaf(locations), _leaf(weights)
    out = ms_deform_attn(value, shapes, starts, locations, weights, 64)
    grads = torch.autograd.grad(out, (value, locations, weights), _grad_like(out, 1), allow_unused=True)
    return dict(zip(("output", "grad_value", "grad_sampling_locations", "grad_attention_weights"), (out, *grads)))


def _emsda_inputs(N, levels, Lq, C, M, P, dtype, seed):
    value, shapes, starts, locations, weights, weight, bias = emsda_profile.make_inputs(
        N, levels, Lq, C, M, P, "cpu", dtype=torch.float64, seed=seed)
    return tuple(t.to(dtype) if t.is_floating_point() else t
                 for t in (value, shapes, starts, _spread(locations), weights, weight, bias))


def _emsda_run(value, shapes, starts, locations, weights, weight, bias):
    leaves = [_leaf(t) for t in (value, locations, weights, weight, bias)]
    out = emsda(leaves[0], shapes, starts, leaves[1], leaves[2], leaves[3], leaves[4])
    grads = torch.autograd.grad(out, leaves, _grad_like(out, 2), allow_unused=True)
    names = ("grad_value", "grad_sampling_locations", "grad_attention_weights", "grad_weight", "grad_bias")
    return {"output": out, **dict(zip(names, grads))}


def lap_inputs(B, N, M, dtype, seed, num_rows=None, num_cols=None, nan=None, infeasible=None):
    """Random costs [B, N, M]; item `nan` gets a NaN entry, item `infeasible` a row of +inf."""
    cost = torch.rand(B, N, M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    if nan is not None:
        cost[nan, 1, 1] = float("nan")
    if infeasible is not None:
        cost[infeasible, 0, :] = float("inf")
    sizes = [None if s is None else torch.tensor(s, dtype=torch.int64) for s in (num_rows, num_cols)]
    return (cost, *sizes)


def _lap_run(maximize):
    def run(cost, num_rows, num_cols):
        rows, cols, status = batched_linear_sum_assignment(cost, num_rows, num_cols, maximize=maximize,
                                                           return_status=True)
        return {"row_ind": rows, "col_ind": cols, "status": status}

    return run


def _oks_people(batch, N, M, dtype):
    """Pairwise OKS inputs; person 0 has no labelled keypoint, person 1 zero area."""
    pred, gt, visible, area, sigmas = oks_profile.pairwise_inputs(batch, N, M, "cpu")
    if M > 1:
        visible[..., 0, :] = False
        area[..., 1] = 0
    return pred.to(dtype), gt.to(dtype), visible, area, sigmas


def _pairwise_run(pred, gt, visible, area, sigmas):
    return {"oks": pairwise_oks(pred, gt, visible, area, sigmas)}


def _loss_inputs(P, dtype):
    pred, gt, visible, area, sigmas = oks_profile.loss_inputs(P, "cpu")
    if P > 1:
        visible[0] = False
        area[1] = 0
    return pred.detach().to(dtype), gt.to(dtype), visible, area, sigmas


def _loss_run(mode):
    def run(pred, gt, visible, area, sigmas):
        pred, gt = _leaf(pred), _leaf(gt)
        loss = oks_loss(pred, gt, visible, area, sigmas, mode=mode, reduction="none")
        grad_pred, grad_gt = torch.autograd.grad(loss, (pred, gt), _grad_like(loss, 3))
        return {"loss": loss, "grad_pred": grad_pred, "grad_gt": grad_gt}

    return run


def _name(dtype):
    return str(dtype).removeprefix("torch.")


def calls():
    """Every smoke call, in the order they run."""
    result = []
    for dtype in DTYPES:
        d = _name(dtype)
        result += [
            SmokeCall(f"ms_deform_attn {d} Poseur levels N=2 Lq=17 M=8 D=32 P=4",
                      lambda dtype=dtype: sampling_inputs(2, POSEUR_LEVELS, 17, 8, 32, 4, dtype, 10), _msda_run),
            SmokeCall(f"emsda {d} Poseur levels N=2 Lq=17 C=256 M=8 P=4",
                      lambda dtype=dtype: _emsda_inputs(2, POSEUR_LEVELS, 17, 256, 8, 4, dtype, 11), _emsda_run),
            SmokeCall(f"pairwise_oks {d} 2x300x13 (batched)",
                      lambda dtype=dtype: _oks_people(2, 300, 13, dtype), _pairwise_run),
            SmokeCall(f"pairwise_oks {d} 600x26", lambda dtype=dtype: _oks_people(None, 600, 26, dtype),
                      _pairwise_run),
        ]
        result += [SmokeCall(f"oks_loss ({mode}) {d} 600 pairs", lambda dtype=dtype: _loss_inputs(600, dtype),
                             _loss_run(mode)) for mode in ("log", "linear")]
    f32 = torch.float32
    result += [
        SmokeCall("ms_deform_attn float32 PETR levels N=1 Lq=30 M=8 D=32 P=17",
                  lambda: sampling_inputs(1, PETR_LEVELS, 30, 8, 32, 17, f32, 12), _msda_run),
        SmokeCall("ms_deform_attn float32 D=71 (idle lanes), an empty level",
                  lambda: sampling_inputs(2, SMALL_LEVELS, 5, 3, 71, 3, f32, 13), _msda_run),
        SmokeCall("ms_deform_attn float32 empty batch N=0",
                  lambda: sampling_inputs(0, SMALL_LEVELS, 5, 2, 8, 2, f32, 14), _msda_run),
        SmokeCall("emsda float32 an empty level, no queries Lq=0",
                  lambda: _emsda_inputs(2, SMALL_LEVELS, 0, 16, 4, 2, f32, 15), _emsda_run),
        SmokeCall("oks_loss (log) float32 no pairs P=0", lambda: _loss_inputs(0, f32), _loss_run("log")),
        SmokeCall("pairwise_oks float32 no people M=0", lambda: _oks_people(None, 5, 0, f32), _pairwise_run),
    ]
    for dtype in (torch.float32, torch.float64):
        d = _name(dtype)
        result += [
            # Tall (N > M: solved transposed, column-major copy): padded items, an empty one, a NaN, an infeasible one.
            SmokeCall(f"batched_linear_sum_assignment {d} 6x40x13 padded, invalid, infeasible",
                      lambda dtype=dtype: lap_inputs(6, 40, 13, dtype, 20, num_rows=[40, 25, 0, 13, 40, 40],
                                                      num_cols=[13, 13, 5, 2, 13, 13], nan=4, infeasible=5),
                      _lap_run(False)),
            SmokeCall(f"batched_linear_sum_assignment {d} 5x13x40 padded, maximize",
                      lambda dtype=dtype: lap_inputs(5, 13, 40, dtype, 21, num_rows=[13, 7, 13, 1, 0],
                                                      num_cols=[40, 40, 9, 40, 3]), _lap_run(True)),
            # PETR's matching per image (300 queries, 13 people); small under racecheck, which tracks
            # every shared-memory access of the solver's state.
            SmokeCall(f"batched_linear_sum_assignment {d} 4x300x13",
                      lambda dtype=dtype: lap_inputs(4, 300, 13, dtype, 22), _lap_run(False)),
        ]
    result += [
        SmokeCall("batched_linear_sum_assignment float32 2x1700x4 (state in global memory)",
                  lambda: lap_inputs(2, 1700, 4, torch.float32, 23), _lap_run(False)),
        SmokeCall("batched_linear_sum_assignment float32 empty batch B=0",
                  lambda: lap_inputs(0, 5, 3, torch.float32, 24), _lap_run(False)),
        SmokeCall("batched_linear_sum_assignment float32 sizes out of range (CUDA reports status 3)",
                  lambda: lap_inputs(2, 4, 4, torch.float32, 25, num_rows=[5, 4], num_cols=[4, -1]),
                  _lap_run(False), cuda_only=True,
                  expected={"status": torch.tensor([3, 3], dtype=torch.int32)}),
    ]
    return result


def to_device(inputs, device):
    return tuple(t if t is None else t.to(device) for t in inputs)


def mismatch(name, got, want):
    """A message if `got` (device) differs from `want` (CPU) beyond tolerance, else None."""
    if got is None or want is None:
        return None if got is None and want is None else f"{name}: one result is None"
    got = got.detach().cpu()
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"{name}: {tuple(got.shape)} {got.dtype} vs CPU {tuple(want.shape)} {want.dtype}"
    if not want.is_floating_point():
        return None if torch.equal(got, want) else f"{name}: differs from the CPU"
    if want.numel() == 0:
        return None
    scale = want.double().abs().max().clamp_min(1e-30)
    err = float((got.double() - want.double()).abs().max() / scale)
    if not err <= TOLERANCE[want.dtype]:  # NaN fails too
        return f"{name}: relative error {err:.2e} > {TOLERANCE[want.dtype]:.0e}"
    return None


def run_call(call, device, compare):
    """Runs one call on `device` (and on the CPU to compare); returns a list of problems."""
    inputs = call.make()
    got = call.run(*to_device(inputs, device))
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    if call.expected is not None:
        want = call.expected
    elif compare:
        want = {k: None if v is None else v.detach() for k, v in call.run(*inputs).items()}
    else:
        return []
    problems = [mismatch(k, got.get(k), want[k]) for k in want]
    return [p for p in problems if p]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--no-compare", action="store_true", help="on CUDA, skip the comparison with the CPU")
    parser.add_argument("--list", action="store_true", help="print the calls and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(call.name for call in calls()))
        return 0
    from posetr.profile import check_device

    try:
        device = check_device(args.device)
    except ValueError as exc:
        parser.exit(2, f"posetr.tools.cuda_smoke: error: {exc}\n")
    compare = device.type == "cuda" and not args.no_compare
    failed = ran = 0
    for call in calls():
        if call.cuda_only and device.type != "cuda":
            print(f"skip  {call.name} (CUDA only)", flush=True)
            continue
        ran += 1
        try:
            problems = run_call(call, device, compare)
        except Exception:  # report every call: one failure must not hide the others
            problems = [traceback.format_exc(limit=3).strip().replace("\n", "\n      ")]
        failed += bool(problems)
        print(f"{'FAIL' if problems else 'ok'}  {call.name}", flush=True)
        for problem in problems:
            print(f"      {problem}", flush=True)
    print(f"cuda_smoke on {device}: {ran - failed} of {ran} calls {'ran and matched the CPU' if compare else 'ran'}"
          + (f", {failed} FAILED" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
