"""torch.library registrations shared by the multi-scale deformable sampling ops.

``ms_deform_attn`` and ``emsda_sample`` take the same arguments (value,
value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights,
im2col_step) and have a backward op ``_<name>_backward`` returning the gradients of
value, sampling_locations and attention_weights.
"""
import torch

from posetr.ops._sampling_dtypes import check_param_dtypes, scalar_type_name


def register_sampling_op(name, backward):
    """Registers the backward op's fake kernel and the autograd formula of ``posetr::<name>``.

    ``backward(value, shapes, starts, locations, weights, grad_output, im2col_step)``
    returns (grad_value, grad_sampling_locations, grad_attention_weights).
    """

    @torch.library.register_fake(f"posetr::_{name}_backward")
    def _backward_fake(value, shapes, starts, locations, weights, grad_output, im2col_step):
        return torch.empty_like(value), torch.empty_like(locations), torch.empty_like(weights)

    def setup_context(ctx, inputs, output):
        value, shapes, starts, locations, weights, im2col_step = inputs
        ctx.save_for_backward(value, shapes, starts, locations, weights)
        ctx.im2col_step = im2col_step

    def gradient(ctx, grad_output):
        grad_value, grad_locations, grad_weights = backward(*ctx.saved_tensors, grad_output, ctx.im2col_step)
        return grad_value, None, None, grad_locations, grad_weights, None

    torch.library.register_autograd(f"posetr::{name}", gradient, setup_context=setup_context)


def check_fake_inputs(
    value, value_layout, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights
):
    """torch._check the ranks, dtypes and devices a sampling op's fake kernel relies on and
    returns, with the C++ checks' messages. ``value_layout`` is e.g. "[N, S, M, D]".

    The C++ kernels check everything else, the values of ``value_spatial_shapes`` and
    ``value_level_start_index`` included: a fake kernel cannot read them (data-dependent
    values would leave unbacked symbols that ``torch.compile(fullgraph=True)`` rejects), and
    a compiled graph calls the real kernel, whose checks run before any memory is touched.
    """
    rank = value_layout.count(",") + 1
    torch._check_value(
        value.dim() == rank, lambda: f"value must be a {rank}-D tensor {value_layout}, got shape {tuple(value.shape)}"
    )
    torch._check_value(
        value.dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16),
        lambda: f"value must be float64, float32, float16 or bfloat16, got {scalar_type_name(value.dtype)}",
    )
    torch._check_value(
        sampling_locations.dim() == 6,
        lambda: f"sampling_locations must be a 6-D tensor [N, Lq, M, L, P, 2], got shape {tuple(sampling_locations.shape)}",
    )
    for name, t, why in (
        ("value_spatial_shapes", value_spatial_shapes, "integer (H, W) per level"),
        ("value_level_start_index", value_level_start_index, "integer offsets"),
    ):
        torch._check_value(
            t.dtype == torch.int64, lambda: f"{name} must be Long ({why}), got {scalar_type_name(t.dtype)}"
        )
    check_param_dtypes(value, sampling_locations, attention_weights)
    others = {
        "value_spatial_shapes": value_spatial_shapes,
        "value_level_start_index": value_level_start_index,
        "sampling_locations": sampling_locations,
        "attention_weights": attention_weights,
    }
    for name, t in others.items():
        torch._check(
            t.device == value.device,
            lambda: f"{name} is on {t.device} but value is on {value.device}; all inputs must be on one device",
        )
