"""posetr.ops.MSDeformAttn: Deformable DETR's module on posetr's kernel."""
import math

import pytest
import torch

from posetr.ops import MSDeformAttn
from posetr.ops.reference import ms_deform_attn_pytorch

LEVELS = [(6, 8), (3, 4), (2, 2), (1, 1)]


def feature_map(N=2, C=16, dtype=torch.float64):
    shapes = torch.tensor(LEVELS, dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    return torch.randn(N, int(areas.sum()), C, dtype=dtype), shapes, starts


def reference_forward(module, query, reference_points, value_map, shapes, starts, padding_mask=None):
    """The same module with the grid_sample oracle, written out from Deformable DETR's forward."""
    N, Lq, _ = query.shape
    M, L, P, C = module.n_heads, module.n_levels, module.n_points, module.d_model
    value = module.value_proj(value_map)
    if padding_mask is not None:
        value = value.masked_fill(padding_mask[..., None], 0.0)
    value = value.view(N, -1, M, C // M)
    offsets = module.sampling_offsets(query).view(N, Lq, M, L, P, 2)
    weights = module.attention_weights(query).view(N, Lq, M, L * P).softmax(-1).view(N, Lq, M, L, P)
    if reference_points.shape[-1] == 2:
        norm = torch.stack([shapes[:, 1], shapes[:, 0]], -1)
        loc = reference_points[:, :, None, :, None, :] + offsets / norm[None, None, None, :, None, :]
    else:
        loc = reference_points[:, :, None, :, None, :2] + offsets / P * reference_points[:, :, None, :, None, 2:] * 0.5
    return module.output_proj(ms_deform_attn_pytorch(value, shapes, starts, loc, weights))


@pytest.mark.parametrize("ref_dim", [2, 4])
def test_forward_and_backward_match_reference(ref_dim):
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=16, n_levels=4, n_heads=4, n_points=3).double()
    with torch.no_grad():  # leave the zero init so offsets and weights depend on the query
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    value_map, shapes, starts = feature_map()
    query = torch.randn(2, 5, 16, dtype=torch.float64)
    reference_points = torch.rand(2, 5, 4, ref_dim, dtype=torch.float64)
    mask = torch.zeros(2, value_map.shape[1], dtype=torch.bool)
    mask[1, -10:] = True
    out = module(query, reference_points, value_map, shapes, starts, mask)
    ref = reference_forward(module, query, reference_points, value_map, shapes, starts, mask)
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.sum(), list(module.parameters()))
    ref_grads = torch.autograd.grad(ref.sum(), list(module.parameters()))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_initialisation_is_deformable_detrs():
    module = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3)
    assert module.sampling_offsets.weight.abs().sum() == 0
    assert module.attention_weights.weight.abs().sum() == 0 and module.attention_weights.bias.abs().sum() == 0
    bias = module.sampling_offsets.bias.view(4, 2, 3, 2)
    # Head h points in direction 2*pi*h/M scaled so the larger coordinate is 1, point p at distance p + 1.
    for h in range(4):
        theta = 2 * math.pi * h / 4
        direction = torch.tensor([math.cos(theta), math.sin(theta)])
        direction = direction / direction.abs().max()
        for p in range(3):
            torch.testing.assert_close(bias[h, 1, p], direction * (p + 1))


def test_errors():
    with pytest.raises(ValueError, match="d_model must be divisible by n_heads"):
        MSDeformAttn(d_model=30, n_heads=8)
    module = MSDeformAttn(d_model=16, n_levels=4, n_heads=4, n_points=2).double()
    value_map, shapes, starts = feature_map()
    with pytest.raises(ValueError, match="reference_points must end in 2"):
        module(torch.randn(2, 3, 16, dtype=torch.float64), torch.rand(2, 3, 4, 3, dtype=torch.float64), value_map, shapes, starts)
