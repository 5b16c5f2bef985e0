"""posetr.ops.EMSDeformAttn: Poseur's post-value deformable attention module."""
import math

import pytest
import torch

from posetr.ops import EMSDeformAttn, MSDeformAttn
from posetr.ops.reference import emsda_pytorch

LEVELS = ((6, 5), (3, 4), (2, 2))


def level_layout(levels=LEVELS):
    shapes = torch.tensor(levels, dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    return shapes, torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]]), int(areas.sum())


def make_module(C=16, M=4, P=3, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    module = EMSDeformAttn(embed_dims=C, num_heads=M, num_levels=len(LEVELS), num_points=P).to(dtype)
    with torch.no_grad():  # leave the initialisation's uniform attention for a random one
        module.attention_weights.weight.normal_(0, 0.3)
        module.sampling_offsets.weight.normal_(0, 0.3)
    return module


def test_matches_poseur_formulation():
    module = make_module()
    shapes, starts, S = level_layout()
    N, Lq, C, M, L, P = 2, 5, 16, 4, len(LEVELS), 3
    query, value = torch.randn(N, Lq, C, dtype=torch.float64), torch.randn(N, S, C, dtype=torch.float64)
    reference = torch.rand(N, Lq, L, 2, dtype=torch.float64)
    out = module(query, reference, value, shapes, starts)

    offsets = module.sampling_offsets(query).view(N, Lq, M, L, P, 2)
    weights = module.attention_weights(query).view(N, Lq, M, L * P).softmax(-1).view(N, Lq, M, L, P)
    locations = reference[:, :, None, :, None] + offsets / shapes.flip(-1).double()[None, None, None, :, None]
    # Head m projects with rows m*D:(m+1)*D of value_proj, as nn.Linear would after the sampling.
    weight = torch.stack(module.value_proj.weight.split(C // M)).transpose(1, 2)
    bias = torch.stack(module.value_proj.bias.split(C // M))
    expected = module.output_proj(emsda_pytorch(value, shapes, starts, locations, weights, weight, bias))
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-10)


def test_equals_msda_when_every_sample_lands_inside_the_map():
    """Projection commutes with bilinear sampling and the weighted sum when every corner is
    on the map (weights sum to 1), so post-value EMSDA equals MSDA with the same parameters."""
    module = make_module()
    msda = MSDeformAttn(d_model=16, n_levels=len(LEVELS), n_heads=4, n_points=3).double()
    with torch.no_grad():
        module.sampling_offsets.weight.zero_()
        module.sampling_offsets.bias.uniform_(-0.1, 0.1)  # pixels
    msda.load_state_dict(module.state_dict())
    shapes, starts, S = level_layout()
    query, value = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, S, 16, dtype=torch.float64)
    reference = torch.rand(2, 5, len(LEVELS), 2, dtype=torch.float64) * 0.3 + 0.35
    torch.testing.assert_close(
        module(query, reference, value, shapes, starts), msda(query, reference, value, shapes, starts)
    )


def test_shared_reference_points_broadcast_over_levels():
    module = make_module()
    shapes, starts, S = level_layout()
    query, value = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, S, 16, dtype=torch.float64)
    reference = torch.rand(2, 5, 2, dtype=torch.float64)
    per_level = reference[:, :, None].expand(2, 5, len(LEVELS), 2)
    torch.testing.assert_close(
        module(query, reference, value, shapes, starts), module(query, per_level, value, shapes, starts)
    )


def test_padding_mask_zeroes_features():
    module = make_module()
    shapes, starts, S = level_layout()
    query, value = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, S, 16, dtype=torch.float64)
    reference = torch.rand(2, 5, 2, dtype=torch.float64)
    mask = torch.rand(2, S) < 0.3
    torch.testing.assert_close(
        module(query, reference, value, shapes, starts, mask),
        module(query, reference, value.masked_fill(mask[..., None], 0), shapes, starts),
    )


def test_gradients_reach_every_parameter_and_input():
    module = make_module(dtype=torch.float32)
    shapes, starts, S = level_layout()
    query = torch.randn(2, 5, 16, requires_grad=True)
    value = torch.randn(2, S, 16, requires_grad=True)
    reference = torch.rand(2, 5, 2, requires_grad=True)
    module(query, reference, value, shapes, starts).square().sum().backward()
    for name, tensor in [*module.named_parameters(), ("query", query), ("value", value), ("reference", reference)]:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name


def test_initialisation_is_mmcv_multi_scale_deformable_attention():
    module = EMSDeformAttn(embed_dims=32, num_heads=8, num_levels=2, num_points=3)
    assert module.attention_weights.weight.abs().sum() == 0 and module.attention_weights.bias.abs().sum() == 0
    assert module.sampling_offsets.weight.abs().sum() == 0
    bias = module.sampling_offsets.bias.view(8, 2, 3, 2)
    # Head 1 of 8 looks at 45 degrees: (1, 1) after scaling by the larger of |cos|, |sin|.
    torch.testing.assert_close(bias[1, 0, :, :], torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    torch.testing.assert_close(bias[2, 1, 0], torch.tensor([math.cos(math.pi / 2), 1.0]))
    for linear in (module.value_proj, module.output_proj):
        assert linear.bias.abs().sum() == 0
        bound = math.sqrt(6.0 / (32 + 32))  # Xavier uniform
        assert linear.weight.abs().max() <= bound


def test_bad_arguments():
    with pytest.raises(ValueError, match="embed_dims must be divisible by num_heads"):
        EMSDeformAttn(embed_dims=30, num_heads=8)
    module = make_module()
    shapes, starts, S = level_layout()
    with pytest.raises(ValueError, match="reference_points must be"):
        module(
            torch.randn(2, 5, 16, dtype=torch.float64),
            torch.rand(2, 5, 4, dtype=torch.float64),
            torch.randn(2, S, 16, dtype=torch.float64),
            shapes,
            starts,
        )


@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
def test_module_under_cpu_autocast(input_dtype):
    """Under torch.autocast the linears give bf16 offsets and weights (float32 locations, as
    reference points are float32); the value may come in bf16 from an earlier layer. The module
    brings them to dtypes the kernel takes instead of raising."""
    torch.manual_seed(0)
    module = EMSDeformAttn(embed_dims=32, num_heads=4, num_levels=2, num_points=2)
    shapes, starts = torch.tensor([[6, 5], [3, 3]]), torch.tensor([0, 30])
    query, value, reference = torch.randn(2, 7, 32), torch.randn(2, 39, 32), torch.rand(2, 7, 2, 2)
    expected = module(query, reference, value, shapes, starts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(query, reference, value.to(input_dtype), shapes, starts)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=5e-2, rtol=5e-2)
