"""CUDA kernels against the CPU ones, beyond the per-op test files: every call of the sanitizer's
smoke driver (posetr/tools/cuda_smoke.py: every op and dtype, out-of-map samples, padded and failing
assignment items, empty inputs), float64 gradcheck and opcheck on CUDA, launches on the current
stream, and tensors on a device other than the current one. Every test here needs a GPU.

One GPU cannot show a missing device guard (inputs on cuda:1 while cuda:0 is current), so that test
needs two; the current-stream test is the single-GPU check that each launch uses the caller's stream.
"""
import pytest
import torch

from posetr.ops import emsda
from posetr.tools import cuda_smoke

pytestmark = pytest.mark.cuda

CALLS = {call.name: call for call in cuda_smoke.calls()}
# The first float32 call of each op, for the stream and device-index tests.
ONE_PER_OP = [next(name for name in CALLS if name.startswith(op) and " float32 " in name)
              for op in ("ms_deform_attn", "emsda", "pairwise_oks", "oks_loss", "batched_linear_sum_assignment")]


def _problems(call, device):
    return cuda_smoke.run_call(call, torch.device(device), compare=True)


@pytest.mark.parametrize("name", list(CALLS))
def test_smoke_call_matches_the_cpu(name):
    assert _problems(CALLS[name], "cuda") == []


@pytest.mark.parametrize("name", ONE_PER_OP)
def test_kernels_run_on_the_current_stream(name):
    """The default stream is kept busy; the op runs and its outputs are copied on a side stream. A
    kernel launched on the default stream instead would still be queued when the copies read its output."""
    call = CALLS[name]
    inputs = cuda_smoke.to_device(call.make(), "cuda")
    expected = {k: v.detach().cpu() for k, v in call.run(*inputs).items() if v is not None}
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time on the default stream
    with torch.cuda.stream(side):
        got = {k: v.detach().clone() for k, v in call.run(*inputs).items() if v is not None}
    torch.cuda.synchronize()
    problems = [cuda_smoke.mismatch(key, got[key], want) for key, want in expected.items()]
    assert [p for p in problems if p] == []


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs: inputs on cuda:1, cuda:0 current")
@pytest.mark.parametrize("name", ONE_PER_OP)
def test_inputs_on_another_device_than_the_current_one(name):
    with torch.cuda.device(0):
        assert _problems(CALLS[name], "cuda:1") == []
        outputs = CALLS[name].run(*cuda_smoke.to_device(CALLS[name].make(), "cuda:1"))
    assert all(v.device == torch.device("cuda:1") for v in outputs.values() if v is not None)


def test_emsda_gradcheck_float64():
    from posetr.profile.emsda import make_inputs

    value, shapes, starts, locations, weights, weight, bias = make_inputs(
        2, [(3, 4), (2, 2)], 2, 4, 2, 2, "cuda", dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        locations.mul_(1.4).sub_(0.2)  # some samples off the map

    def fn(v, loc, w, W, b):
        return emsda(v, shapes, starts, loc, w, W, b)

    assert torch.autograd.gradcheck(fn, (value, locations, weights, weight, bias), eps=1e-6, atol=1e-7)


def test_opcheck_sampling_and_assignment_ops():
    value, shapes, starts, locations, weights = cuda_smoke.to_device(
        cuda_smoke.sampling_inputs(2, [(5, 4), (2, 3)], 3, 2, 3, 2, torch.float64, seed=30), "cuda")
    args = (value.requires_grad_(), shapes, starts, locations.requires_grad_(), weights.requires_grad_(), 64)
    torch.library.opcheck(torch.ops.posetr.ms_deform_attn.default, args)
    grad = torch.randn(2, 3, 6, dtype=torch.float64, device="cuda")
    detached = tuple(a.detach() if torch.is_tensor(a) else a for a in args[:5])
    torch.library.opcheck(torch.ops.posetr._ms_deform_attn_backward.default, (*detached, grad, 64))

    shared = value.detach().flatten(2)  # [N, S, C]: EMSDA's un-projected value
    args = (shared.requires_grad_(), shapes, starts, locations, weights, 64)
    torch.library.opcheck(torch.ops.posetr.emsda_sample.default, args)
    grad = torch.randn(2, 3, 2, 6, dtype=torch.float64, device="cuda")
    torch.library.opcheck(torch.ops.posetr._emsda_sample_backward.default, (shared.detach(), *detached[1:], grad, 64))

    cost, num_rows, num_cols = cuda_smoke.to_device(cuda_smoke.lap_inputs(4, 7, 5, torch.float64, seed=31,
                                                                     num_rows=[7, 3, 0, 5], num_cols=[5, 5, 2, 1]),
                                              "cuda")
    op = torch.ops.posetr.batched_linear_sum_assignment.default
    for op_args in [(cost, None, None, False, False), (cost.float(), num_rows, num_cols, True, False),
                    (cost.transpose(1, 2), None, num_rows, False, False)]:
        torch.library.opcheck(op, op_args)
