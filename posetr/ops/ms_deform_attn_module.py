"""Deformable DETR's multi-scale deformable attention module on posetr's kernel."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from posetr.ops._sampling_dtypes import as_param_dtype
from posetr.ops.ms_deform_attn import ms_deform_attn


def add_deformable_attention_layers(module, d_model, n_heads, n_levels, n_points):
    """Gives ``module`` the four linears of Deformable DETR's and mmcv's deformable
    attention, in their order (so checkpoints load unchanged): ``sampling_offsets``
    (C -> M*L*P*2), ``attention_weights`` (C -> M*L*P), ``value_proj`` and ``output_proj``
    (C -> C). The module then initialises them (:func:`reset_deformable_attention_parameters`)."""
    module.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
    module.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
    module.value_proj = nn.Linear(d_model, d_model)
    module.output_proj = nn.Linear(d_model, d_model)


def reset_deformable_attention_parameters(module, n_heads, n_levels, n_points):
    """Deformable DETR's initialisation (mmcv's ``init_weights`` is the same) of a module with
    ``sampling_offsets``, ``attention_weights``, ``value_proj`` and ``output_proj`` linears:
    zero offset weights with head h's points starting in direction 2*pi*h/M at distances
    1..P, uniform attention, Xavier-uniform projections with zero bias.
    """
    nn.init.constant_(module.sampling_offsets.weight, 0.0)
    thetas = torch.arange(n_heads, dtype=torch.float32) * (2.0 * math.pi / n_heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(n_heads, 1, 1, 2)
    grid = grid.repeat(1, n_levels, n_points, 1)
    grid = grid * torch.arange(1, n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
    with torch.no_grad():
        module.sampling_offsets.bias.copy_(grid.view(-1))
    nn.init.constant_(module.attention_weights.weight, 0.0)
    nn.init.constant_(module.attention_weights.bias, 0.0)
    nn.init.xavier_uniform_(module.value_proj.weight)
    nn.init.constant_(module.value_proj.bias, 0.0)
    nn.init.xavier_uniform_(module.output_proj.weight)
    nn.init.constant_(module.output_proj.bias, 0.0)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (Zhu et al., Deformable DETR, ICLR 2021).

    Same parameters, initialisation and forward as Deformable DETR's
    ``models/ops/modules/ms_deform_attn.py``, so its checkpoints load unchanged.

    Args:
        d_model (int): hidden size C; must be divisible by ``n_heads``.
        n_levels (int): number of feature levels L.
        n_heads (int): number of attention heads M.
        n_points (int): sampling points P per head and level.
        attn_fn (callable): the MSDA kernel, with the signature of :func:`posetr.ops.ms_deform_attn`
            (default); models pass ``posetr.ops.reference.ms_deform_attn_pytorch`` to run on the oracle.

    Raises:
        ValueError: ``d_model`` not divisible by ``n_heads``.
    """

    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4, attn_fn=ms_deform_attn):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}")
        self.im2col_step = 64
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.attn_fn = attn_fn
        add_deformable_attention_layers(self, d_model, n_heads=n_heads, n_levels=n_levels, n_points=n_points)
        self._reset_parameters()

    def _reset_parameters(self):
        reset_deformable_attention_parameters(self, n_heads=self.n_heads, n_levels=self.n_levels, n_points=self.n_points)

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
            query (Tensor[N, Lq, C]): queries.
            reference_points (Tensor[N, Lq, L, 2] or Tensor[N, Lq, L, 4]): normalised
                (x, y) in [0, 1], or boxes (cx, cy, w, h) whose size scales the offsets.
            input_flatten (Tensor[N, S, C]): the flattened multi-scale feature map.
            input_spatial_shapes (Tensor[L, 2], int64): (H, W) per level.
            input_level_start_index (Tensor[L], int64): start of each level in S.
            input_padding_mask (Tensor[N, S], bool, optional): True at padding positions.

        Returns:
            Tensor[N, Lq, C].

        Raises:
            ValueError: ``reference_points`` whose last dimension is not 2 or 4, and
                every error of :func:`posetr.ops.ms_deform_attn`.
        """
        value, offsets, weights = self._project(query, input_flatten, input_padding_mask)
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(
                f"reference_points must end in 2 (x, y) or 4 (cx, cy, w, h), got shape {tuple(reference_points.shape)}"
            )
        return self._attend(value, input_spatial_shapes, input_level_start_index, locations, weights)

    def _project(self, query, input_flatten, input_padding_mask):
        """Per-head values [N, S, M, D], sampling offsets [N, Lq, M, L, P, 2] (pixels of each
        level) and softmaxed attention weights [N, Lq, M, L, P]."""
        N, Lq, _ = query.shape
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(N, input_flatten.shape[1], self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(N, Lq, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(N, Lq, self.n_heads, self.n_levels * self.n_points)
        weights = F.softmax(weights, -1).view(N, Lq, self.n_heads, self.n_levels, self.n_points)
        return value, offsets, weights

    def _attend(self, value, spatial_shapes, level_start_index, locations, weights):
        """The kernel and the output projection. Under float16/bfloat16 autocast the value and
        weights come out of low-precision linears but the locations (reference points + offsets)
        are float32: the kernel takes them as they are and keeps the locations in float32
        (:func:`posetr.ops.ms_deform_attn`); other mixes are brought to dtypes it takes."""
        output = self.attn_fn(
            value,
            spatial_shapes,
            level_start_index,
            as_param_dtype(locations, value),
            as_param_dtype(weights, value),
            self.im2col_step,
        )
        return self.output_proj(output)
