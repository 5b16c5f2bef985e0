"""ms_deform_attn against the grid_sample oracle, gradients, dtypes, errors, drop-ins."""
import importlib
import warnings

import pytest
import torch

from posetr.ops import MSDeformAttn, MSDeformAttnFunction, MultiScaleDeformableAttnFunction, ms_deform_attn
from posetr.ops.reference import ms_deform_attn_pytorch


# The module, not the function of the same name that posetr.ops exports.
msda_module = importlib.import_module("posetr.ops.ms_deform_attn")

LEVELS = [(7, 9), (4, 5), (2, 3), (1, 2), (3, 1)]


def make_inputs(N=2, L=2, Lq=5, M=2, D=3, P=2, dtype=torch.float64, device="cpu", spread=(0.0, 1.0), seed=None):
    """Fresh random inputs; locations uniform in ``spread`` (beyond [0, 1] reads zeros)."""
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    shapes = torch.tensor(LEVELS[:L], dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S = int(areas.sum())
    lo, hi = spread
    value = torch.randn(N, S, M, D, generator=gen, dtype=torch.float64)
    loc = torch.rand(N, Lq, M, L, P, 2, generator=gen, dtype=torch.float64) * (hi - lo) + lo
    attn = torch.rand(N, Lq, M, L, P, generator=gen, dtype=torch.float64)
    cast = [t.to(device=device, dtype=dtype) for t in (value, loc, attn)]
    return cast[0], shapes.to(device), starts.to(device), cast[1], cast[2]


def assert_matches_reference(inputs, atol=1e-12, rtol=1e-10):
    value, shapes, starts, loc, attn = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
    out = ms_deform_attn(value, shapes, starts, loc, attn, 64)
    ref = ms_deform_attn_pytorch(value, shapes, starts, loc, attn)
    torch.testing.assert_close(out, ref, atol=atol, rtol=rtol)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (value, loc, attn), grad)
    theirs = torch.autograd.grad(ref, (value, loc, attn), grad)
    for name, a, b in zip(("value", "sampling_locations", "attention_weights"), ours, theirs):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("D", [1, 30, 32, 64, 71, 1025])
@pytest.mark.parametrize("L,P", [(1, 1), (4, 4), (5, 17), (1, 17), (5, 1)])
def test_matches_reference_float64(D, L, P):
    Lq = 3 if D == 1025 else 6
    assert_matches_reference(make_inputs(N=2, L=L, Lq=Lq, M=2, D=D, P=P))


@pytest.mark.parametrize("levels", [[(5, 37), (3, 19), (2, 10), (1, 5)], [(4, 1), (2, 17), (3, 33)]])
def test_encoder_queries_match_reference(levels):
    # Lq == S (an encoder): the CPU forward visits the queries in vertical strips of
    # each level (EncoderQueryOrder); every query must still be computed exactly once.
    # Widths above and below the strip width, narrower last strips and 1-wide levels.
    gen = torch.Generator().manual_seed(7)
    shapes = torch.tensor(levels, dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    N, S, M, D, L, P = 2, int(areas.sum()), 2, 5, len(levels), 3
    value = torch.randn(N, S, M, D, generator=gen, dtype=torch.float64)
    loc = torch.rand(N, S, M, L, P, 2, generator=gen, dtype=torch.float64)
    attn = torch.rand(N, S, M, L, P, generator=gen, dtype=torch.float64)
    assert_matches_reference((value, shapes, starts, loc, attn))
    out32 = ms_deform_attn(value.float(), shapes, starts, loc.float(), attn.float())
    ref = ms_deform_attn_pytorch(value, shapes, starts, loc, attn)
    torch.testing.assert_close(out32.double(), ref, atol=1e-5, rtol=1e-5)


def test_locations_well_outside_the_map():
    assert_matches_reference(make_inputs(L=4, P=4, Lq=40, spread=(-1.5, 2.5)))


def test_locations_on_the_border_and_integer_pixels():
    value, shapes, starts, loc, attn = make_inputs(L=1, P=4, Lq=4, M=1, D=2)
    H, W = LEVELS[0]
    # Pixel centres, exact borders, and the first point outside on each side.
    xs = torch.tensor([0.0, 0.5 / W, 1.0, -1.0 / W, 1.0 + 1.0 / W - 1e-9, 0.5], dtype=torch.float64)
    grid = torch.cartesian_prod(xs, xs)[: 4 * 4].view(1, 4, 1, 1, 4, 2)
    loc = grid.expand_as(loc[:1]).repeat(2, 1, 1, 1, 1, 1).contiguous()
    assert_matches_reference((value, shapes, starts, loc, attn))


def test_batch_not_divisible_by_im2col_step():
    value, shapes, starts, loc, attn = make_inputs(N=5, L=2)
    out = ms_deform_attn(value, shapes, starts, loc, attn, 2)
    torch.testing.assert_close(out, ms_deform_attn_pytorch(value, shapes, starts, loc, attn))


def test_non_contiguous_inputs():
    value, shapes, starts, loc, attn = make_inputs(N=2, L=3, Lq=7, M=3, D=5, P=4)
    # Same values through transposed storage.
    value_nc = value.transpose(1, 3).contiguous().transpose(1, 3)
    loc_nc = loc.permute(5, 0, 1, 2, 3, 4).contiguous().permute(1, 2, 3, 4, 5, 0)
    attn_nc = attn.transpose(0, 1).contiguous().transpose(0, 1)
    assert not (value_nc.is_contiguous() or loc_nc.is_contiguous() or attn_nc.is_contiguous())
    assert_matches_reference((value_nc, shapes, starts, loc_nc, attn_nc))


@pytest.mark.parametrize("N,Lq", [(2, 0), (0, 4)])
def test_empty_queries_and_batch(N, Lq):
    value, shapes, starts, loc, attn = [
        t.requires_grad_(t.is_floating_point()) for t in make_inputs(N=N, Lq=Lq, M=2, D=3)
    ]
    out = ms_deform_attn(value, shapes, starts, loc, attn, 64)
    assert out.shape == (N, Lq, 6)
    out.sum().backward()
    assert value.grad.shape == value.shape and value.grad.abs().sum() == 0


def test_gradcheck():
    value, shapes, starts, loc, attn = make_inputs(N=2, L=3, Lq=3, M=2, D=3, P=2, spread=(-0.2, 1.2))
    inputs = (value.requires_grad_(), loc.requires_grad_(), attn.requires_grad_())
    assert torch.autograd.gradcheck(lambda v, l, a: ms_deform_attn(v, shapes, starts, l, a, 64), inputs)


@pytest.mark.parametrize(
    "dtype,atol", [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1.5e-1)]
)
def test_reduced_precision_against_float32(dtype, atol):
    """Half and bfloat16 accumulate in float32; error is that of rounding inputs and outputs."""
    inputs = make_inputs(N=2, L=4, Lq=20, M=2, D=32, P=4, dtype=dtype)
    value, shapes, starts, loc, attn = [t.requires_grad_(t.is_floating_point()) for t in inputs]
    out = ms_deform_attn(value, shapes, starts, loc, attn, 64)
    assert out.dtype == dtype
    f32 = [t.detach().float().requires_grad_() for t in (value, loc, attn)]
    ref = ms_deform_attn_pytorch(f32[0], shapes, starts, f32[1], f32[2])
    torch.testing.assert_close(out.float(), ref, atol=atol, rtol=atol)
    grad = torch.randn_like(ref)
    ours = torch.autograd.grad(out, (value, loc, attn), grad.to(dtype))
    theirs = torch.autograd.grad(ref, f32, grad)
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        # Location gradients scale with H and W: compare relative to their magnitude.
        scale = b.abs().max().clamp_min(1.0)
        torch.testing.assert_close(a.float() / scale, b / scale, atol=atol, rtol=atol)


def test_opcheck():
    value, shapes, starts, loc, attn = make_inputs(N=2, L=2, Lq=3, M=2, D=3, P=2)
    args = (value.requires_grad_(), shapes, starts, loc.requires_grad_(), attn.requires_grad_(), 64)
    torch.library.opcheck(torch.ops.posetr.ms_deform_attn.default, args)
    grad = torch.randn(2, 3, 6, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.posetr._ms_deform_attn_backward.default, (value.detach(), shapes, starts, loc.detach(), attn.detach(), grad, 64)
    )


def test_torch_compile_fullgraph():
    value, shapes, starts, loc, attn = make_inputs(N=2, L=2, Lq=4, M=2, D=4, P=2, dtype=torch.float32)

    @torch.compile(fullgraph=True)
    def attend(value, loc, attn):
        return ms_deform_attn(value, shapes, starts, loc.sigmoid(), attn.softmax(-1), 64) * 2

    torch.testing.assert_close(
        attend(value, loc, attn), 2 * ms_deform_attn_pytorch(value, shapes, starts, loc.sigmoid(), attn.softmax(-1))
    )


# ---- mixed precision (autocast) ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("loc_dtype,attn_dtype", [(torch.float32, torch.float32), (torch.float32, None), (None, torch.float32)])
def test_reduced_value_with_float32_locations_and_weights(dtype, loc_dtype, attn_dtype):
    """autocast's dtypes: a half/bf16 value from a linear, float32 locations and softmaxed
    weights. The kernel uses float32 locations and weights as they are: the answer is the float64
    oracle's on the rounded value and the unrounded float32 locations and weights, within the
    rounding of the output; gradients come back in each input's dtype."""
    value, shapes, starts, loc, attn = make_inputs(N=2, L=4, Lq=20, M=2, D=32, P=4, dtype=torch.float32, seed=3)
    value = value.to(dtype)
    loc, attn = loc.to(loc_dtype or dtype), attn.to(attn_dtype or dtype)
    leaves = [t.detach().requires_grad_() for t in (value, loc, attn)]
    out = ms_deform_attn(leaves[0], shapes, starts, leaves[1], leaves[2])
    assert out.dtype == dtype
    f64 = [t.detach().double().requires_grad_() for t in (value, loc, attn)]
    ref = ms_deform_attn_pytorch(f64[0], shapes, starts, f64[1], f64[2])
    tol = 2**-8 if dtype == torch.bfloat16 else 2**-11  # one rounding of the output
    torch.testing.assert_close(out.double(), ref, atol=tol * ref.abs().max().item(), rtol=tol)
    grad = torch.randn_like(ref)
    ours = torch.autograd.grad(out, leaves, grad.to(dtype))
    theirs = torch.autograd.grad(ref, f64, grad)
    for name, leaf, a, b in zip(("value", "sampling_locations", "attention_weights"), leaves, ours, theirs):
        assert a.dtype == leaf.dtype, name
        # grad_output is rounded to the value's dtype before the kernel: a few roundings.
        scale = b.abs().max().item()
        torch.testing.assert_close(a.double(), b, atol=8 * tol * scale, rtol=0, msg=lambda m: f"grad {name}: {m}")


def test_float32_locations_are_not_rounded_to_bfloat16():
    """A bfloat16 location on a 167-pixel level is off by up to 0.65 pixel: down-casting the
    locations to the value's dtype (mmcv's type_as) moves the samples, keeping them float32 does not."""
    gen = torch.Generator().manual_seed(0)
    shapes, starts = torch.tensor([[100, 167]]), torch.tensor([0])
    value = torch.randn(1, 100 * 167, 1, 8, generator=gen).bfloat16()
    loc = torch.rand(1, 500, 1, 1, 1, 2, generator=gen)
    attn = torch.ones(1, 500, 1, 1, 1)
    ref = ms_deform_attn_pytorch(value.double(), shapes, starts, loc.double(), attn.double())
    ours = ms_deform_attn(value, shapes, starts, loc, attn).double()
    rounded = ms_deform_attn(value, shapes, starts, loc.bfloat16(), attn.bfloat16()).double()
    ours_err, rounded_err = (ours - ref).abs().max().item(), (rounded - ref).abs().max().item()
    assert ours_err < 0.05 and rounded_err > 0.5, (ours_err, rounded_err)
    assert (loc.bfloat16().double() - loc.double()).abs().max() * 167 > 0.3  # the rounding the test guards against


@pytest.mark.parametrize(
    "value_dtype,param_dtype,message",
    [
        (torch.float32, torch.float16, r"must have the dtype of value \(Float\), got Half"),
        (torch.float64, torch.float32, r"must have the dtype of value \(Double\), got Float"),
        (torch.float16, torch.float64, r"must have the dtype of value \(Half\) or be float32, got Double"),
        (torch.bfloat16, torch.float16, r"must have the dtype of value \(BFloat16\) or be float32, got Half"),
    ],
)
def test_other_mixed_dtypes_raise(value_dtype, param_dtype, message):
    value, shapes, starts, loc, attn = make_inputs(dtype=value_dtype)
    with pytest.raises(ValueError, match="sampling_locations " + message):
        ms_deform_attn(value, shapes, starts, loc.to(param_dtype), attn)
    with pytest.raises(ValueError, match="attention_weights " + message):
        ms_deform_attn(value, shapes, starts, loc, attn.to(param_dtype))
    # The fake kernel (torch.compile, meta tensors) says the same.
    meta = [t.to("meta") for t in (value, shapes, starts, loc.to(param_dtype), attn)]
    with pytest.raises(ValueError, match="sampling_locations " + message):
        torch.ops.posetr.ms_deform_attn(*meta, 64)


def test_mixed_precision_opcheck_and_compile():
    value, shapes, starts, loc, attn = make_inputs(N=2, L=2, Lq=3, M=2, D=3, P=2, dtype=torch.float32)
    value = value.half()
    args = (value.requires_grad_(), shapes, starts, loc.requires_grad_(), attn.requires_grad_(), 64)
    torch.library.opcheck(torch.ops.posetr.ms_deform_attn.default, args)
    grad = torch.randn(2, 3, 6).half()
    backward_args = (value.detach(), shapes, starts, loc.detach(), attn.detach(), grad, 64)
    torch.library.opcheck(torch.ops.posetr._ms_deform_attn_backward.default, backward_args)
    compiled = torch.compile(ms_deform_attn, fullgraph=True)
    torch.testing.assert_close(compiled(value, shapes, starts, loc, attn), ms_deform_attn(value, shapes, starts, loc, attn))


# ---- errors ---------------------------------------------------------------------------------------------


def _call(value, shapes, starts, loc, attn, step=64):
    return ms_deform_attn(value, shapes, starts, loc, attn, step)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda a: a.__setitem__(0, a[0][0]), "value must be a 4-D tensor"),
        (lambda a: a.__setitem__(3, a[3][..., 0]), "sampling_locations must be a 6-D tensor"),
        (lambda a: a.__setitem__(4, a[4][..., 0]), "attention_weights must be a 5-D tensor"),
        (lambda a: a.__setitem__(1, a[1].float()), "value_spatial_shapes must be Long"),
        (lambda a: a.__setitem__(1, a[1][:, :1]), r"value_spatial_shapes.size\(1\) must be 2"),
        (lambda a: a.__setitem__(2, a[2][:1]), r"value_level_start_index.size\(0\) must be 2"),
        (lambda a: a.__setitem__(2, a[2] + 1), r"value_level_start_index\[0\] must be 0"),
        (lambda a: a.__setitem__(0, a[0][:, 1:]), r"value.size\(1\) must equal sum\(H \* W\)"),
        (lambda a: a.__setitem__(0, a[0].long()), "value must be float64, float32, float16 or bfloat16"),
        (lambda a: a.__setitem__(3, a[3].float()), "sampling_locations must have the dtype of value"),
        (lambda a: a.__setitem__(4, a[4].float()), "attention_weights must have the dtype of value"),
        (lambda a: a.__setitem__(3, a[3][:, :, :1]), r"sampling_locations.size\(2\) must be 2 \(number of heads M\)"),
        (lambda a: a.__setitem__(3, a[3][:1]), r"sampling_locations.size\(0\) must be 2 \(batch size N"),
        (lambda a: a.__setitem__(4, a[4][..., :1]), "attention_weights must have shape"),
        (lambda a: a.__setitem__(5, 0), "im2col_step must be positive"),
    ],
)
def test_bad_input_names_the_argument(mutate, message):
    args = list(make_inputs(N=2, L=2, M=2)) + [64]
    mutate(args)
    with pytest.raises(ValueError, match=message):
        _call(*args)


# Hostile level shapes whose H * W wraps around int64 onto value.size(1) (which once passed the
# checks and sent the kernels outside value: SIGSEGV), or that are out of range however they multiply.
# (value_spatial_shapes, value.size(1)); value_level_start_index follows the wrapped products.
HOSTILE_LEVELS = [
    ([[4, 2**62 + 1]], 4),  # 4 * (2^62 + 1) wraps to 4
    ([[2**32, 2**32]], 0),  # 2^64 wraps to 0
    ([[2, 2], [2**62, 4]], 4),  # a second level that wraps to 0
    ([[0, 2**62]], 0),  # an empty level with an absurd width
    ([[2**62, 0]], 0),
]


def _hostile_inputs(shapes, S, emsda_layout):
    shapes = torch.tensor(shapes, dtype=torch.int64)
    wrapped = [(h * w) % 2**64 for h, w in shapes.tolist()]
    starts = torch.tensor([sum(wrapped[:l]) for l in range(len(wrapped))], dtype=torch.int64)
    N, Lq, M, D, L, P = 1, 8, 1, 4, shapes.shape[0], 1
    value = torch.randn(N, S, D) if emsda_layout else torch.randn(N, S, M, D)
    loc = torch.rand(N, Lq, M, L, P, 2)
    attn = torch.rand(N, Lq, M, L, P)
    return value, shapes, starts, loc, attn


SAMPLING_OPS = {
    "ms_deform_attn": lambda v, s, st, loc, a: torch.ops.posetr.ms_deform_attn(v, s, st, loc, a, 64),
    "_ms_deform_attn_backward": lambda v, s, st, loc, a: torch.ops.posetr._ms_deform_attn_backward(
        v, s, st, loc, a, torch.ones(v.shape[0], loc.shape[1], v.shape[2] * v.shape[3]), 64
    ),
    "emsda_sample": lambda v, s, st, loc, a: torch.ops.posetr.emsda_sample(v, s, st, loc, a, 64),
    "_emsda_sample_backward": lambda v, s, st, loc, a: torch.ops.posetr._emsda_sample_backward(
        v, s, st, loc, a, torch.ones(v.shape[0], loc.shape[1], loc.shape[2], v.shape[2]), 64
    ),
}


@pytest.mark.parametrize("op", list(SAMPLING_OPS))
@pytest.mark.parametrize("shapes,S", HOSTILE_LEVELS)
def test_hostile_spatial_shapes_raise_instead_of_crashing(op, shapes, S):
    inputs = _hostile_inputs(shapes, S, emsda_layout=op.lstrip("_").startswith("emsda"))
    with pytest.raises(ValueError, match=r"value_spatial_shapes\[\d\] = \(\d+, \d+\)"):
        SAMPLING_OPS[op](*inputs)


def test_level_sizes_are_summed_without_overflow():
    # A value of 2^40 positions (expanded: no memory) that the first level fills; the second level's
    # H * W = 2^60 is compared with what is left (0) before it is added.
    S = 2**40
    value = torch.zeros(1, 1, 1, 1).expand(1, S, 1, 1)
    shapes = torch.tensor([[2**20, 2**20], [2**30, 2**30]])
    loc, attn = torch.rand(1, 1, 1, 2, 1, 2), torch.rand(1, 1, 1, 2, 1)
    with pytest.raises(ValueError, match=r"value_spatial_shapes\[1\] = \(1073741824, 1073741824\) needs more than the 0"):
        ms_deform_attn(value, shapes, torch.tensor([0, S]), loc, attn)


def test_mixed_devices_raise():
    value, shapes, starts, loc, attn = make_inputs()
    with pytest.raises(RuntimeError, match="on one device"):
        _call(value, shapes, starts, loc.to("meta"), attn)


# ---- drop-ins -------------------------------------------------------------------------------------------


def test_autograd_function_drop_in():
    assert MultiScaleDeformableAttnFunction is MSDeformAttnFunction
    value, shapes, starts, loc, attn = [t.requires_grad_(t.is_floating_point()) for t in make_inputs(L=3, P=4)]
    out = MSDeformAttnFunction.apply(value, shapes, starts, loc, attn, 64)
    ref = ms_deform_attn_pytorch(value, shapes, starts, loc, attn)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (value, loc, attn), grad), torch.autograd.grad(ref, (value, loc, attn), grad)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("value_dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("param_dtype", [torch.float32, torch.float64, torch.float16])
def test_drop_ins_take_what_mmcv_takes(value_dtype, param_dtype):
    """mmcv's MultiScaleDeformableAttnFunction takes locations and weights of any dtype
    (``type_as(value)``): under autocast a half value meets float32 ones (mmcv's
    test_forward_equal_with_autocast). The drop-ins take them too, keep float32 as is, give
    float32 for other dtypes with a half/bf16 value (mmcv: the value's dtype) and the value's
    dtype otherwise, and return each gradient in its input's dtype."""
    MSDA = importlib.import_module("MultiScaleDeformableAttention")
    value, shapes, starts, loc, attn = make_inputs(L=2, P=2, dtype=torch.float32, seed=5)
    value, loc, attn = value.to(value_dtype), loc.to(param_dtype), attn.to(param_dtype)
    kernel_dtype = param_dtype if param_dtype in (value_dtype, torch.float32) else (
        torch.float32 if value_dtype != torch.float32 else value_dtype
    )
    expected = ms_deform_attn(value, shapes, starts, loc.to(kernel_dtype), attn.to(kernel_dtype))
    leaves = [t.detach().requires_grad_() for t in (value, loc, attn)]
    out = MSDeformAttnFunction.apply(leaves[0], shapes, starts, leaves[1], leaves[2], 64)
    assert out.dtype == value_dtype
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    torch.testing.assert_close(MSDA.ms_deform_attn_forward(value, shapes, starts, loc, attn, 64), expected, atol=0, rtol=0)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, grad)
    ext_grads = MSDA.ms_deform_attn_backward(value, shapes, starts, loc, attn, grad, 64)
    for leaf, a, b in zip(leaves, grads, ext_grads):
        assert a.dtype == b.dtype == leaf.dtype
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_module_under_cpu_autocast():
    """MSDeformAttn under torch.autocast: bf16 linears, float32 locations and weights into the kernel."""
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=2)
    shapes = torch.tensor([[6, 5], [3, 3]])
    starts = torch.tensor([0, 30])
    x = torch.randn(2, 39, 32)
    reference_points = torch.rand(2, 39, 2, 2)
    expected = module(x, reference_points, x, shapes, starts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x, reference_points, x, shapes, starts)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=5e-2, rtol=5e-2)


def test_extension_module_drop_in():
    """Deformable DETR's compiled extension API: `import MultiScaleDeformableAttention as MSDA`."""
    MSDA = importlib.import_module("MultiScaleDeformableAttention")
    value, shapes, starts, loc, attn = make_inputs(L=3, P=4)
    out = MSDA.ms_deform_attn_forward(value, shapes, starts, loc, attn, 64)
    torch.testing.assert_close(out, ms_deform_attn_pytorch(value, shapes, starts, loc, attn))
    grad = torch.randn_like(out)
    grads = MSDA.ms_deform_attn_backward(value, shapes, starts, loc, attn, grad, 64)
    assert isinstance(grads, list) and len(grads) == 3
    leaves = [t.requires_grad_() for t in (value, loc, attn)]
    expected = torch.autograd.grad(ms_deform_attn_pytorch(leaves[0], shapes, starts, leaves[1], leaves[2]), leaves, grad)
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)


def test_reference_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(msda_module, "HAS_EXTENSION", False)
    monkeypatch.setattr("posetr._ext._IMPORT_ERROR", ImportError("not built"), raising=False)
    monkeypatch.setattr("posetr._ext._warned", set())
    value, shapes, starts, loc, attn = make_inputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = msda_module.ms_deform_attn(value, shapes, starts, loc, attn)
        msda_module.ms_deform_attn(value, shapes, starts, loc, attn)
    assert len([w for w in caught if "pure-PyTorch reference" in str(w.message)]) == 1
    torch.testing.assert_close(out, ms_deform_attn_pytorch(value, shapes, starts, loc, attn))


# ---- CUDA -----------------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("D", [1, 32, 71, 1025])
def test_cuda_matches_cpu(dtype, D):
    inputs = make_inputs(N=2, L=4, Lq=9, M=2, D=D, P=5, dtype=dtype, spread=(-0.3, 1.3))
    cpu = [t.requires_grad_(t.is_floating_point()) for t in inputs]
    gpu = [t.detach().cuda().requires_grad_(t.is_floating_point()) for t in inputs]
    out_cpu, out_gpu = ms_deform_attn(*cpu, 64), ms_deform_attn(*gpu, 64)
    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, atol=tol, rtol=tol)
    grad = torch.randn_like(out_cpu)
    g_cpu = torch.autograd.grad(out_cpu, (cpu[0], cpu[3], cpu[4]), grad)
    g_gpu = torch.autograd.grad(out_gpu, (gpu[0], gpu[3], gpu[4]), grad.cuda())
    for a, b in zip(g_gpu, g_cpu):
        scale = b.abs().max().float().clamp_min(1.0)
        torch.testing.assert_close(a.cpu().float() / scale, b.float() / scale, atol=tol, rtol=tol)


@pytest.mark.cuda
def test_cuda_gradcheck():
    value, shapes, starts, loc, attn = make_inputs(L=3, Lq=3, P=2, device="cuda", spread=(-0.2, 1.2))
    inputs = (value.requires_grad_(), loc.requires_grad_(), attn.requires_grad_())
    assert torch.autograd.gradcheck(lambda v, l, a: ms_deform_attn(v, shapes, starts, l, a, 64), inputs)
