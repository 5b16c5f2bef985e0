"""Poseur's efficient multi-scale deformable attention (EMSDA) as torch ops.

``torch.ops.posetr.emsda_sample`` (C++ on the CPU, CUDA) samples the un-projected
value once for all heads; :func:`emsda` follows it with one batched matmul per head
for the value projection. This module registers the sampling op's fake kernel and
gradient and exposes the functional API.
"""
import torch

from posetr._ext import HAS_EXTENSION, warn_fallback
from posetr.ops._sampling_registration import check_fake_inputs, register_sampling_op
from posetr.ops.reference import ms_deform_attn_pytorch

__all__ = ["emsda", "emsda_sample", "emsda_sample_backward"]


def emsda(
    value,
    value_spatial_shapes,
    value_level_start_index,
    sampling_locations,
    attention_weights,
    value_proj_weight,
    value_proj_bias,
    im2col_step=64,
):
    """Efficient multi-scale deformable attention (Mao et al., Poseur, ECCV 2022, sec. 3.3).

    The value projection of MSDA moves behind the sampling: every head m samples all
    C channels of the un-projected ``value`` at its own locations, sums them with its
    attention weights and projects the result with its own weight::

        sampled[n, q, m, c] = sum_{l, p} attention_weights[n, q, m, l, p]
                              * bilinear(value[n, level l, c], sampling_locations[n, q, m, l, p])
        out[n, q, m*D:(m+1)*D] = sampled[n, q, m] @ value_proj_weight[m] + value_proj_bias[m]

    This equals Poseur's ``MultiScaleDeformableAttention_post_value`` (repeat the value
    M times, MSDA with D = C, per-head projection) without the M-fold copy. Bilinear
    sampling is MSDA's (see :func:`posetr.ops.ms_deform_attn`); corners outside the map
    read zeros, and the bias is added whatever the samples read.

    Args:
        value (Tensor[N, S, C]): float64, float32, float16 or bfloat16; the un-projected
            features of all levels flattened level by level (S = sum H*W).
        value_spatial_shapes (Tensor[L, 2], int64): (H, W) of each level, in pixels.
        value_level_start_index (Tensor[L], int64): start of each level in S.
        sampling_locations (Tensor[N, Lq, M, L, P, 2]): normalised (x, y) in [0, 1];
            the dtype of ``value`` or, for a float16/bfloat16 ``value``, float32 (used in
            float32 inside the kernel), as for :func:`posetr.ops.ms_deform_attn`.
        attention_weights (Tensor[N, Lq, M, L, P]): dtypes as ``sampling_locations``.
        value_proj_weight (Tensor[M, C, D]): per-head projection, dtype of ``value``.
            Poseur uses D = C // M (``nn.Linear(C, C).weight.view(M, D, C).transpose(1, 2)``);
            any D >= 0 works, so C need not be divisible by M here.
        value_proj_bias (Tensor[M, D]): per-head bias, dtype of ``value``.
        im2col_step (int): accepted for compatibility with MSDA; must be positive.

    Returns:
        Tensor[N, Lq, M * D] in the dtype of ``value`` (sampling accumulated in float32
        for float16/bfloat16).

    Raises:
        ValueError: wrong ranks or shapes (``value_proj_weight`` not [M, C, D] for the M
            of ``sampling_locations`` and the C of ``value``, ``value_proj_bias`` not [M, D]),
            a projection dtype other than the value's, and every error of
            :func:`posetr.ops.ms_deform_attn`'s level and sampling checks.
        RuntimeError: inputs on different devices.

    Differentiable with respect to ``value``, ``sampling_locations``, ``attention_weights``,
    ``value_proj_weight`` and ``value_proj_bias``; each gradient has its input's dtype.
    """
    _check_projection(value, sampling_locations, value_proj_weight, value_proj_bias)
    sampled = emsda_sample(
        value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
    )
    output = torch.einsum("nqmc,mcd->nqmd", sampled, value_proj_weight) + value_proj_bias
    return output.flatten(2)


def _check_projection(value, sampling_locations, weight, bias):
    if weight.dim() != 3:
        raise ValueError(f"value_proj_weight must be a 3-D tensor [M, C, D], got shape {tuple(weight.shape)}")
    if bias.dim() != 2 or bias.shape[0] != weight.shape[0] or bias.shape[1] != weight.shape[2]:
        raise ValueError(
            f"value_proj_bias must have shape [M, D] = {(weight.shape[0], weight.shape[2])} to match "
            f"value_proj_weight, got {tuple(bias.shape)}"
        )
    if value.dim() == 3 and weight.shape[1] != value.shape[2]:
        raise ValueError(
            f"value_proj_weight.size(1) must be C = value.size(2) = {value.shape[2]}, got shape {tuple(weight.shape)}"
        )
    if sampling_locations.dim() == 6 and weight.shape[0] != sampling_locations.shape[2]:
        raise ValueError(
            f"value_proj_weight.size(0) must be the number of heads M = sampling_locations.size(2) = "
            f"{sampling_locations.shape[2]}, got shape {tuple(weight.shape)}"
        )
    for name, tensor in (("value_proj_weight", weight), ("value_proj_bias", bias)):
        # A non-floating value is the sampling op's error to report.
        if value.is_floating_point() and tensor.dtype != value.dtype:
            raise ValueError(f"{name} must have the dtype of value ({value.dtype}), got {tensor.dtype}")


def emsda_sample(
    value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step=64
):
    """The sampling half of :func:`emsda`: Tensor[N, Lq, M, C], head m's attention-weighted
    bilinear samples of all C channels of ``value`` (Tensor[N, S, C]). Arguments, dtypes and
    errors as :func:`emsda`; differentiable in ``value``, ``sampling_locations`` and
    ``attention_weights``.
    """
    if not HAS_EXTENSION:
        warn_fallback("emsda")
        return _sample_pytorch(value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights)
    return torch.ops.posetr.emsda_sample(
        value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
    )


def emsda_sample_backward(
    value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, grad_output, im2col_step=64
):
    """Gradients of :func:`emsda_sample` for ``grad_output`` (Tensor[N, Lq, M, C]).

    Returns:
        (grad_value, grad_sampling_locations, grad_attention_weights), shaped and typed
        like ``value``, ``sampling_locations`` and ``attention_weights``.
    """
    if HAS_EXTENSION:
        return torch.ops.posetr._emsda_sample_backward(
            value,
            value_spatial_shapes,
            value_level_start_index,
            sampling_locations,
            attention_weights,
            grad_output.contiguous(),
            im2col_step,
        )
    warn_fallback("emsda")

    def forward(v, loc, attn):
        return _sample_pytorch(v, value_spatial_shapes, value_level_start_index, loc, attn)

    _, vjp = torch.func.vjp(forward, value, sampling_locations, attention_weights)
    return vjp(grad_output)


def _sample_pytorch(value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights):
    N, S, C = value.shape
    Lq, M = sampling_locations.shape[1:3]
    repeated = value[:, :, None, :].expand(N, S, M, C)
    return ms_deform_attn_pytorch(
        repeated, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights
    ).view(N, Lq, M, C)


if HAS_EXTENSION:

    @torch.library.register_fake("posetr::emsda_sample")
    def _emsda_sample_fake(
        value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
    ):
        check_fake_inputs(
            value, "[N, S, C]", value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights
        )
        n, _, c = value.shape
        return value.new_empty((n, sampling_locations.shape[1], sampling_locations.shape[2], c))

    register_sampling_op("emsda_sample", emsda_sample_backward)
