"""posetr.ops.emsda against Poseur's formulation (repeat value per head + MSDA + per-head projection)."""
import pytest
import torch

from posetr.ops import emsda, emsda_sample
from posetr.ops.reference import emsda_pytorch

from conftest import devices

GRAD_NAMES = ["value", "sampling_locations", "attention_weights", "value_proj_weight", "value_proj_bias"]


def make_inputs(N=2, levels=((6, 5), (3, 4)), Lq=4, M=2, C=8, P=3, D=4, dtype=torch.float64, device="cpu", seed=0,
                spread=1.4):
    """Random EMSDA inputs; locations span [-(spread-1)/2, 1+(spread-1)/2], so some fall off the map."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S, L = int(areas.sum()), len(levels)
    value = torch.randn(N, S, C, generator=gen)
    locations = torch.rand(N, Lq, M, L, P, 2, generator=gen) * spread - (spread - 1) / 2
    weights = torch.rand(N, Lq, M, L, P, generator=gen)
    weight = torch.randn(M, C, D, generator=gen) / C**0.5
    bias = torch.randn(M, D, generator=gen)
    cast = [t.to(device=device, dtype=dtype) for t in (value, locations, weights, weight, bias)]
    return dict(
        value=cast[0],
        value_spatial_shapes=shapes.to(device),
        value_level_start_index=starts.to(device),
        sampling_locations=cast[1],
        attention_weights=cast[2],
        value_proj_weight=cast[3],
        value_proj_bias=cast[4],
    )


def outputs_and_grads(fn, inputs, seed=1):
    leaves = {k: v.detach().clone().requires_grad_(k in GRAD_NAMES) for k, v in inputs.items()}
    out = fn(**leaves)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
    grads = torch.autograd.grad(out, [leaves[k] for k in GRAD_NAMES], grad_out)
    return out.detach(), dict(zip(GRAD_NAMES, grads))


def assert_matches_reference(inputs, atol=1e-10, rtol=1e-9):
    out, grads = outputs_and_grads(emsda, inputs)
    ref_out, ref_grads = outputs_and_grads(emsda_pytorch, {k: v.cpu() for k, v in inputs.items()})
    torch.testing.assert_close(out.cpu(), ref_out, atol=atol, rtol=rtol)
    for name in GRAD_NAMES:
        torch.testing.assert_close(grads[name].cpu(), ref_grads[name], atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(
    "sizes",
    [
        dict(),
        # Odd C and M (Poseur's D = C // M), one level, one point.
        dict(C=15, M=3, D=5, levels=((7, 3),), P=1),
        dict(C=7, M=5, D=1, Lq=3, P=2),
        # C not divisible by M: any per-head output width D works.
        dict(C=10, M=3, D=2),
        # Poseur's decoder layout in miniature: 4 levels halving, 4 points, 8 heads.
        dict(N=3, levels=((8, 6), (4, 3), (2, 2), (1, 1)), Lq=5, M=8, C=16, P=4, D=2),
        # One channel, one head, single-pixel levels.
        dict(N=1, levels=((1, 1), (1, 2)), Lq=2, M=1, C=1, P=2, D=3),
    ],
)
def test_matches_poseur_formulation_float64(device, sizes):
    assert_matches_reference(make_inputs(device=device, **sizes))


@pytest.mark.parametrize("seed", range(3))
def test_matches_on_fresh_random_inputs(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    N, Lq, M, C, P = (int(torch.randint(1, 5, (1,), generator=gen)) for _ in range(5))
    num_levels = int(torch.randint(1, 4, (1,), generator=gen))
    levels = [tuple(int(x) for x in torch.randint(1, 9, (2,), generator=gen)) for _ in range(num_levels)]
    assert_matches_reference(make_inputs(N=N, levels=levels, Lq=Lq, M=M, C=C, P=P, D=3, seed=seed))


def test_out_of_map_samples_read_zeros_and_keep_the_bias():
    inputs = make_inputs()
    loc = inputs["sampling_locations"]
    # Beyond (-1, H) x (-1, W) in pixels for every level: left, right, above, below.
    far = torch.tensor([[-0.6, 0.5], [1.6, 0.5], [0.5, -0.6], [0.5, 1.6]], dtype=loc.dtype)
    inputs["sampling_locations"] = far[torch.arange(loc[..., 0].numel()) % 4].view(loc.shape)
    out, grads = outputs_and_grads(emsda, inputs)
    M, D = inputs["value_proj_bias"].shape
    torch.testing.assert_close(out, inputs["value_proj_bias"].reshape(1, 1, M * D).expand_as(out), atol=0, rtol=0)
    for name in ("value", "sampling_locations", "attention_weights", "value_proj_weight"):
        assert grads[name].abs().max() == 0, name
    assert_matches_reference(inputs)


def test_samples_on_the_border_match_the_reference():
    inputs = make_inputs(levels=((4, 4), (2, 3)))
    loc = inputs["sampling_locations"]
    # Pixel centres, edges and corners: x * W - 0.5 in {-0.5, 0, W - 1, W - 0.5}; avoid exact
    # integer pixel coordinates, where bilinear sampling has no derivative.
    picks = torch.tensor([0.0, 0.01, 0.99, 1.0], dtype=loc.dtype)
    inputs["sampling_locations"] = picks[torch.arange(loc.numel()) % 4].view(loc.shape)
    assert_matches_reference(inputs)


def test_gradcheck():
    inputs = make_inputs(N=2, levels=((3, 4), (2, 2)), Lq=2, M=2, C=3, P=2, D=2)
    leaves = {k: v.requires_grad_(k in GRAD_NAMES) for k, v in inputs.items()}

    def fn(*tensors):
        return emsda(**{**leaves, **dict(zip(GRAD_NAMES, tensors))})

    assert torch.autograd.gradcheck(fn, [leaves[k] for k in GRAD_NAMES], eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 1e-2), (torch.bfloat16, 4e-2)])
def test_low_precision_against_float32(device, dtype, tol):
    """Half/bf16 inputs accumulate in float32: outputs and gradients stay within `tol`,
    relative to the largest magnitude, of float32 on the same (rounded) inputs; only the
    results' rounding (bf16 keeps 8 mantissa bits, half 11) and the projection differ."""
    inputs = make_inputs(N=2, levels=((8, 6), (4, 3)), Lq=6, M=4, C=32, P=4, D=8, dtype=torch.float32, device=device)
    low_inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    out32, grads32 = outputs_and_grads(emsda, {k: v.float() if v.is_floating_point() else v for k, v in low_inputs.items()})
    out, grads = outputs_and_grads(emsda, low_inputs)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads.values())
    for name, low, ref in [("output", out, out32)] + [(k, grads[k], grads32[k]) for k in GRAD_NAMES]:
        err = (low.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-6)
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol}"


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 1e-2), (torch.bfloat16, 4e-2)])
def test_reduced_value_with_float32_locations_and_weights(dtype, tol):
    """autocast's dtypes, as for MSDA: a half/bf16 value and projection, float32 locations and
    weights used as they are. Against the float64 oracle on the same values; each gradient in its
    input's dtype."""
    inputs = make_inputs(N=2, levels=((8, 6), (4, 3)), Lq=6, M=4, C=32, P=4, D=8, dtype=torch.float32, seed=4)
    mixed = {k: v.to(dtype) if k in ("value", "value_proj_weight", "value_proj_bias") else v for k, v in inputs.items()}
    out, grads = outputs_and_grads(emsda, mixed)
    ref, ref_grads = outputs_and_grads(emsda_pytorch, {k: v.double() if v.is_floating_point() else v for k, v in mixed.items()})
    assert out.dtype == dtype
    for name, low, exact in [("output", out, ref)] + [(k, grads[k], ref_grads[k]) for k in GRAD_NAMES]:
        if name != "output":
            assert low.dtype == mixed[name].dtype, name
        err = (low.double() - exact).abs().max() / exact.abs().max().clamp_min(1e-6)
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol}"
    args = _sample_args(mixed)
    torch.library.opcheck(torch.ops.posetr.emsda_sample.default, args)
    N, Lq, M = mixed["sampling_locations"].shape[:3]
    grad_output = torch.randn(N, Lq, M, mixed["value"].shape[2]).to(dtype)
    torch.library.opcheck(torch.ops.posetr._emsda_sample_backward.default, args[:5] + [grad_output, 64])


def test_non_contiguous_inputs():
    inputs = make_inputs(C=6, M=3, D=2)
    strided = dict(inputs)
    strided["value"] = inputs["value"].transpose(1, 2).contiguous().transpose(1, 2)
    strided["sampling_locations"] = inputs["sampling_locations"].flip(-1).contiguous().flip(-1)
    strided["attention_weights"] = torch.cat([inputs["attention_weights"]] * 2, dim=-1)[..., ::2]
    strided["attention_weights"].copy_(inputs["attention_weights"])
    strided["value_proj_weight"] = inputs["value_proj_weight"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided["value"].is_contiguous() and not strided["attention_weights"].is_contiguous()
    out, grads = outputs_and_grads(emsda, strided)
    ref_out, ref_grads = outputs_and_grads(emsda, inputs)
    torch.testing.assert_close(out, ref_out, atol=0, rtol=0)
    for name in GRAD_NAMES:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=0, rtol=0)


@pytest.mark.parametrize("sizes", [dict(Lq=0), dict(N=0), dict(C=4, D=0)])
def test_empty(sizes):
    inputs = make_inputs(**sizes)
    out, grads = outputs_and_grads(emsda, inputs)
    N, Lq, M = inputs["sampling_locations"].shape[:3]
    assert out.shape == (N, Lq, M * inputs["value_proj_weight"].shape[2])
    for name in GRAD_NAMES:
        assert grads[name].shape == inputs[name].shape and grads[name].abs().sum() == 0


def test_empty_levels_read_zeros():
    inputs = make_inputs(levels=((0, 3), (2, 0)))
    assert inputs["value"].shape[1] == 0
    out, _ = outputs_and_grads(emsda, inputs)
    M, D = inputs["value_proj_bias"].shape
    torch.testing.assert_close(out, inputs["value_proj_bias"].reshape(1, 1, M * D).expand_as(out))


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: a.update(value=a["value"][0]), r"value must be a 3-D tensor \[N, S, C\]"),
        (lambda a: a.update(value=a["value"].long()), "value must be float64, float32, float16 or bfloat16"),
        (lambda a: a.update(value=a["value"][:, 1:]), r"value.size\(1\) must equal sum\(H \* W\)"),
        (lambda a: a.update(value_spatial_shapes=a["value_spatial_shapes"].int()), "value_spatial_shapes must be"),
        (lambda a: a.update(value_level_start_index=a["value_level_start_index"] + 1), "value_level_start_index"),
        (lambda a: a.update(sampling_locations=a["sampling_locations"][..., 0]), "sampling_locations must be a 6-D"),
        (lambda a: a.update(sampling_locations=a["sampling_locations"][:1]), r"sampling_locations.size\(0\) must be"),
        (lambda a: a.update(sampling_locations=a["sampling_locations"].float()), "sampling_locations must have the dtype"),
        (lambda a: a.update(attention_weights=a["attention_weights"][..., :1]), "attention_weights must have shape"),
        (lambda a: a.update(value_proj_weight=a["value_proj_weight"][0]), "value_proj_weight must be a 3-D tensor"),
        (lambda a: a.update(value_proj_weight=a["value_proj_weight"][:, 1:]), r"value_proj_weight.size\(1\) must be C"),
        (
            lambda a: a.update(value_proj_weight=a["value_proj_weight"][:1], value_proj_bias=a["value_proj_bias"][:1]),
            r"value_proj_weight.size\(0\) must be the number of heads",
        ),
        (lambda a: a.update(value_proj_bias=a["value_proj_bias"][:, 1:]), r"value_proj_bias must have shape \[M, D\]"),
        (lambda a: a.update(value_proj_bias=a["value_proj_bias"].float()), "value_proj_bias must have the dtype"),
        (lambda a: a.update(im2col_step=0), "im2col_step must be positive"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(change, match):
    inputs = make_inputs()
    change(inputs)
    with pytest.raises(ValueError, match=match):
        emsda(**inputs)


def _sample_args(inputs):
    keys = ["value", "value_spatial_shapes", "value_level_start_index", "sampling_locations", "attention_weights"]
    return [inputs[k] for k in keys] + [64]


def test_opcheck():
    inputs = make_inputs(C=5, M=3, D=2)
    for k in ("value", "sampling_locations", "attention_weights"):
        inputs[k].requires_grad_(True)
    args = _sample_args(inputs)
    torch.library.opcheck(torch.ops.posetr.emsda_sample.default, args)
    N, Lq, M = inputs["sampling_locations"].shape[:3]
    grad_output = torch.randn(N, Lq, M, inputs["value"].shape[2], dtype=torch.float64)
    backward_args = [a.detach() if torch.is_tensor(a) else a for a in args[:5]] + [grad_output, 64]
    torch.library.opcheck(torch.ops.posetr._emsda_sample_backward.default, backward_args)


def test_sample_backward_rejects_a_wrong_grad_output():
    inputs = make_inputs()
    args = _sample_args(inputs)
    out = emsda_sample(*args)
    with pytest.raises(ValueError, match=r"grad_output must have shape \[N, Lq, M, C\]"):
        torch.ops.posetr._emsda_sample_backward(*args[:5], out[..., 1:], 64)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_cpu_matches_cuda(dtype, atol):
    inputs = make_inputs(N=3, levels=((8, 6), (4, 3), (2, 2)), Lq=9, M=4, C=33, P=4, D=5, dtype=dtype)
    out, grads = outputs_and_grads(emsda, inputs)
    out_cuda, grads_cuda = outputs_and_grads(emsda, {k: v.cuda() for k, v in inputs.items()})
    torch.testing.assert_close(out_cuda.cpu(), out, atol=atol, rtol=atol)
    for name in GRAD_NAMES:
        torch.testing.assert_close(grads_cuda[name].cpu(), grads[name], atol=atol, rtol=atol)
