"""Poseur's efficient multi-scale deformable attention module on posetr's EMSDA op."""
import torch
import torch.nn.functional as F
from torch import nn

from posetr.ops._sampling_dtypes import as_param_dtype
from posetr.ops.emsda import emsda
from posetr.ops.ms_deform_attn_module import add_deformable_attention_layers, reset_deformable_attention_parameters


class EMSDeformAttn(nn.Module):
    """Efficient multi-scale deformable attention (Mao et al., Poseur, ECCV 2022, sec. 3.3).

    Poseur's ``MultiScaleDeformableAttention_post_value``: MSDA whose value projection is
    applied to each head's sampled, aggregated C-vector instead of to the whole feature map.
    Head m projects with rows ``m*D:(m+1)*D`` of ``value_proj`` (D = embed_dims // num_heads),
    so the parameters (``sampling_offsets``, ``attention_weights``, ``value_proj``,
    ``output_proj``) and their initialisation are mmcv's ``MultiScaleDeformableAttention``'s,
    which Poseur inherits. Dropout and the residual connection belong to the caller.

    Args:
        embed_dims (int): hidden size C; must be divisible by ``num_heads``.
        num_heads (int): number of attention heads M.
        num_levels (int): number of feature levels L.
        num_points (int): sampling points P per head and level.
        im2col_step (int): passed to ``attn_fn``.
        attn_fn (callable): the EMSDA function, :func:`posetr.ops.emsda` (the fused op) or one with its
            signature, e.g. :func:`posetr.ops.reference.emsda_pytorch` (Poseur's repeat + MSDA + projection).

    Raises:
        ValueError: ``embed_dims`` not divisible by ``num_heads``.
    """

    def __init__(self, embed_dims=256, num_heads=8, num_levels=4, num_points=4, im2col_step=64, attn_fn=emsda):
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(
                f"embed_dims must be divisible by num_heads, got embed_dims={embed_dims}, num_heads={num_heads}"
            )
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.im2col_step = im2col_step
        self.attn_fn = attn_fn
        add_deformable_attention_layers(
            self, embed_dims, n_heads=num_heads, n_levels=num_levels, n_points=num_points
        )
        self.init_weights()

    def init_weights(self):
        """mmcv's ``MultiScaleDeformableAttention.init_weights``: zero offset weights with
        head m's points starting in direction 2*pi*m/M at distances 1..P, uniform attention,
        Xavier-uniform projections with zero bias."""
        reset_deformable_attention_parameters(
            self, n_heads=self.num_heads, n_levels=self.num_levels, n_points=self.num_points
        )

    def forward(
        self,
        query,
        reference_points,
        input_flatten,
        input_spatial_shapes,
        input_level_start_index,
        input_padding_mask=None,
    ):
        """
        Args:
            query (Tensor[N, Lq, C]): queries (with their positional embedding added).
            reference_points (Tensor[N, Lq, 2] or Tensor[N, Lq, L, 2]): normalised (x, y) in
                [0, 1], shared by all levels or given per level; offsets are in pixels of
                each level.
            input_flatten (Tensor[N, S, C]): the flattened, un-projected multi-scale features.
            input_spatial_shapes (Tensor[L, 2], int64): (H, W) per level.
            input_level_start_index (Tensor[L], int64): start of each level in S.
            input_padding_mask (Tensor[N, S], bool, optional): True at padding positions,
                whose features are zeroed before sampling.

        Returns:
            Tensor[N, Lq, C].

        Raises:
            ValueError: ``reference_points`` not [N, Lq, 2] or [N, Lq, L, 2], and every
                error of :func:`posetr.ops.emsda`.
        """
        N, Lq, _ = query.shape
        M, L, P, C = self.num_heads, self.num_levels, self.num_points, self.embed_dims
        value = input_flatten
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        if reference_points.dim() == 3 and reference_points.shape[-1] == 2:
            reference_points = reference_points[:, :, None, :]
        elif not (reference_points.dim() == 4 and reference_points.shape[-2:] == (L, 2)):
            raise ValueError(
                f"reference_points must be [N, Lq, 2] or [N, Lq, L={L}, 2], got shape {tuple(reference_points.shape)}"
            )
        offsets = self.sampling_offsets(query).view(N, Lq, M, L, P, 2)
        weights = self.attention_weights(query).view(N, Lq, M, L * P)
        weights = F.softmax(weights, -1).view(N, Lq, M, L, P)
        normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1).to(offsets.dtype)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        # nn.Linear's weight is [M * D, C]: head m owns output rows m*D:(m+1)*D.
        proj_weight = self.value_proj.weight.view(M, C // M, C).transpose(1, 2)
        proj_bias = self.value_proj.bias.view(M, C // M)
        if torch.is_autocast_enabled(value.device.type):
            # The projection in the value's dtype, as autocast runs a linear on a half input.
            proj_weight, proj_bias = proj_weight.to(value.dtype), proj_bias.to(value.dtype)
        # Locations and weights in dtypes the kernel takes (autocast's float32 locations stay).
        output = self.attn_fn(
            value,
            input_spatial_shapes,
            input_level_start_index,
            as_param_dtype(locations, value),
            as_param_dtype(weights, value),
            proj_weight,
            proj_bias,
            self.im2col_step,
        )
        return self.output_proj(output)
