"""FLOPs of a model's forward pass with ``torch.utils.flop_counter.FlopCounterMode``.

Convention: FlopCounterMode counts 2 FLOPs per multiply-accumulate (MAC) of matmuls, linears,
convolutions (transposed too) and attention (``scaled_dot_product_attention``); element-wise ops,
normalisations, activations, pooling and ``grid_sample`` count 0. Papers quoting "GFLOPs" for pose models
(SimpleBaseline, TFPose, Poseur) usually mean GMACs, i.e. half of FlopCounterMode's number.

posetr's deformable sampling (``torch.ops.posetr.ms_deform_attn``) is a custom op the counter does not
know; with ``sampling=True`` it counts 5 MACs per (query, head, level, point, channel): 4 bilinear
corners and 1 attention weight (the "5KSC" term of Poseur's complexity analysis, Supplement A).
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def _ms_deform_attn_flops(value_shape, spatial_shapes_shape, level_start_index_shape, sampling_locations_shape,
                          attention_weights_shape, im2col_step=None, out_shape=None) -> int:
    n, lq, m, levels, points, _ = sampling_locations_shape
    return 2 * 5 * n * lq * m * levels * points * value_shape[-1]


def count_flops(model: torch.nn.Module, *inputs, sampling: bool = False) -> int:
    """FLOPs (2 per MAC) of the forward pass ``model(*inputs)``; the deformable sampling of
    ``posetr.ops.ms_deform_attn`` is included when ``sampling`` (see the module docstring). Runs with
    autograd on: under ``no_grad`` FlopCounterMode's module tracker fails on views of parameters
    (e.g. ``embedding.weight.chunk(2)``), which keep ``requires_grad`` without a ``grad_fn``."""
    mapping = {}
    if sampling:
        import posetr.ops  # noqa: F401  (registers torch.ops.posetr)

        mapping[torch.ops.posetr.ms_deform_attn] = _ms_deform_attn_flops
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter:
        model(*inputs)
    return counter.get_total_flops()
