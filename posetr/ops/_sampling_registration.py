"""torch.library registrations shared by the multi-scale deformable sampling ops.

``ms_deform_attn`` and ``emsda_sample`` take the same arguments (value,
value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights,
im2col_step) and have a backward op ``_<name>_backward`` returning the gradients of
value, sampling_locations and attention_weights.
"""
import torch


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
    """torch._check the ranks and devices a sampling op's fake kernel relies on
    (the C++ kernels check everything else). ``value_layout`` is e.g. "[N, S, M, D]"."""
    rank = value_layout.count(",") + 1
    torch._check(value.dim() == rank, lambda: f"value must be a {rank}-D tensor {value_layout}, got {tuple(value.shape)}")
    torch._check(
        sampling_locations.dim() == 6,
        lambda: f"sampling_locations must be a 6-D tensor [N, Lq, M, L, P, 2], got {tuple(sampling_locations.shape)}",
    )
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
