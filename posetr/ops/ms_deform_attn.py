"""Multi-scale deformable attention (MSDA) as a torch op.

``torch.ops.posetr.ms_deform_attn`` is implemented in C++ (CPU) and CUDA; this
module registers its fake kernel and gradient and exposes the functional API and
the drop-in ``MSDeformAttnFunction`` of Deformable DETR.
"""
import torch

from posetr._ext import HAS_EXTENSION, warn_fallback
from posetr.ops._sampling_dtypes import as_param_dtype
from posetr.ops._sampling_registration import check_fake_inputs, register_sampling_op
from posetr.ops.reference import ms_deform_attn_pytorch

__all__ = ["ms_deform_attn", "ms_deform_attn_backward", "MSDeformAttnFunction", "MultiScaleDeformableAttnFunction"]


def ms_deform_attn(
    value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step=64
):
    """Multi-scale deformable attention (Zhu et al., Deformable DETR, ICLR 2021, eq. 2).

    For every query q, head m and channel d::

        out[n, q, m*D + d] = sum_{l, p} attention_weights[n, q, m, l, p]
                             * bilinear(value[n, level l, m, d], sampling_locations[n, q, m, l, p])

    Bilinear sampling is Deformable DETR's: a normalised location (x, y) maps to the
    pixel coordinate (x * W - 0.5, y * H - 0.5); corners outside the map read zero.
    This equals ``F.grid_sample(align_corners=False, padding_mode="zeros")``.

    Args:
        value (Tensor[N, S, M, D]): float64, float32, float16 or bfloat16; the
            per-head values of all levels flattened level by level (S = sum H*W).
        value_spatial_shapes (Tensor[L, 2], int64): (H, W) of each level, in pixels.
        value_level_start_index (Tensor[L], int64): start of each level in S
            (``cat([0], cumsum(H * W)[:-1])``).
        sampling_locations (Tensor[N, Lq, M, L, P, 2]): normalised (x, y) in [0, 1];
            locations outside [0, 1] are allowed and read zeros. The dtype of ``value``
            or, for a float16/bfloat16 ``value``, float32 (autocast's mixed precision):
            float32 locations are used in float32 inside the kernel, not rounded.
        attention_weights (Tensor[N, Lq, M, L, P]): usually softmaxed over (L, P);
            dtypes as ``sampling_locations`` (each may be float32 on its own).
        im2col_step (int): accepted for compatibility with Deformable DETR; must be
            positive, need not divide N. The kernels process the whole batch at once.

    Returns:
        Tensor[N, Lq, M * D] in the dtype of ``value`` (accumulated in float32 for
        float16/bfloat16).

    Raises:
        ValueError: wrong ranks or shapes, non-floating ``value``, other dtypes of
            ``sampling_locations`` / ``attention_weights`` than above, non-int64 shapes,
            negative H or W, ``value.size(1) != sum(H * W)`` (checked without overflow:
            H and W at most ``value.size(1)``), inconsistent start index, non-positive
            ``im2col_step``.
        RuntimeError: inputs on different devices.

    Differentiable with respect to ``value``, ``sampling_locations`` and ``attention_weights``;
    each gradient has the dtype of its input. The drop-ins :class:`MSDeformAttnFunction`
    and ``MultiScaleDeformableAttention`` also take other dtypes (see there).
    """
    if not HAS_EXTENSION:
        warn_fallback("ms_deform_attn")
        return ms_deform_attn_pytorch(
            value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
        )
    return torch.ops.posetr.ms_deform_attn(
        value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
    )


def ms_deform_attn_backward(
    value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, grad_output, im2col_step=64
):
    """Gradients of :func:`ms_deform_attn` for ``grad_output`` (Tensor[N, Lq, M * D]);
    arguments and dtypes as :func:`ms_deform_attn`.

    Returns:
        (grad_value, grad_sampling_locations, grad_attention_weights), shaped and
        typed like ``value``, ``sampling_locations`` and ``attention_weights``.
    """
    if HAS_EXTENSION:
        return torch.ops.posetr._ms_deform_attn_backward(
            value,
            value_spatial_shapes,
            value_level_start_index,
            sampling_locations,
            attention_weights,
            grad_output.contiguous(),
            im2col_step,
        )
    warn_fallback("ms_deform_attn")

    def forward(v, loc, attn):
        return ms_deform_attn_pytorch(v, value_spatial_shapes, value_level_start_index, loc, attn, im2col_step)

    _, vjp = torch.func.vjp(forward, value, sampling_locations, attention_weights)
    return vjp(grad_output)


if HAS_EXTENSION:

    @torch.library.register_fake("posetr::ms_deform_attn")
    def _ms_deform_attn_fake(
        value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
    ):
        check_fake_inputs(
            value, "[N, S, M, D]", value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights
        )
        n, _, m, d = value.shape
        return value.new_empty((n, sampling_locations.shape[1], m * d))

    register_sampling_op("ms_deform_attn", ms_deform_attn_backward)


class MSDeformAttnFunction(torch.autograd.Function):
    """Drop-in for Deformable DETR's ``MSDeformAttnFunction`` (models/ops/functions/
    ms_deform_attn_func.py) and mmcv's ``MultiScaleDeformableAttnFunction``
    (mmcv/ops/multi_scale_deform_attn.py): ``MSDeformAttnFunction.apply(value,
    value_spatial_shapes, value_level_start_index, sampling_locations,
    attention_weights, im2col_step)`` runs :func:`ms_deform_attn` and
    :func:`ms_deform_attn_backward`.

    Like mmcv's, it takes ``sampling_locations`` and ``attention_weights`` of any real
    dtype, so it runs under autocast (a float16 ``value`` from a half linear, float32
    locations and softmaxed weights). mmcv rounds both to the value's dtype
    (``type_as(value)``); here float32 ones stay float32 inside the kernel, others
    become float32 for a float16/bfloat16 value and the value's dtype otherwise
    (mmcv's choice). The output has the value's dtype, each gradient its input's dtype.
    """

    @staticmethod
    def forward(ctx, value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step):
        ctx.im2col_step = im2col_step
        ctx.param_dtypes = (sampling_locations.dtype, attention_weights.dtype)
        sampling_locations = as_param_dtype(sampling_locations, value)
        attention_weights = as_param_dtype(attention_weights, value)
        ctx.save_for_backward(value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights)
        return ms_deform_attn(
            value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
        )

    @staticmethod
    def backward(ctx, grad_output):
        grad_value, grad_locations, grad_weights = ms_deform_attn_backward(
            *ctx.saved_tensors, grad_output, ctx.im2col_step
        )
        locations_dtype, weights_dtype = ctx.param_dtypes
        return grad_value, None, None, grad_locations.to(locations_dtype), grad_weights.to(weights_dtype), None


MultiScaleDeformableAttnFunction = MSDeformAttnFunction
