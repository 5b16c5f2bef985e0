"""Drop-in for Deformable DETR's compiled extension ``MultiScaleDeformableAttention``.

Deformable-DETR, DINO, ED-Pose and Mask2Former do ``import MultiScaleDeformableAttention
as MSDA`` and call ``MSDA.ms_deform_attn_forward`` / ``MSDA.ms_deform_attn_backward``;
with posetr installed those calls run posetr's kernels, on the CPU too.
"""
from posetr.ops._sampling_dtypes import as_param_dtype
from posetr.ops.ms_deform_attn import ms_deform_attn, ms_deform_attn_backward as _backward

__all__ = ["ms_deform_attn_forward", "ms_deform_attn_backward"]


def ms_deform_attn_forward(value, value_spatial_shapes, value_level_start_index, sampling_loc, attn_weight, im2col_step):
    """Tensor[N, Lq, M * D]: see :func:`posetr.ops.ms_deform_attn`. ``sampling_loc`` and
    ``attn_weight`` may have any real dtype, as for :class:`posetr.ops.MSDeformAttnFunction`."""
    return ms_deform_attn(
        value,
        value_spatial_shapes,
        value_level_start_index,
        as_param_dtype(sampling_loc, value),
        as_param_dtype(attn_weight, value),
        im2col_step,
    )


def ms_deform_attn_backward(
    value, value_spatial_shapes, value_level_start_index, sampling_loc, attn_weight, grad_output, im2col_step
):
    """[grad_value, grad_sampling_loc, grad_attn_weight], each in its input's dtype: see
    :func:`posetr.ops.ms_deform_attn_backward`."""
    grad_value, grad_loc, grad_attn = _backward(
        value,
        value_spatial_shapes,
        value_level_start_index,
        as_param_dtype(sampling_loc, value),
        as_param_dtype(attn_weight, value),
        grad_output,
        im2col_step,
    )
    return [grad_value, grad_loc.to(sampling_loc.dtype), grad_attn.to(attn_weight.dtype)]
