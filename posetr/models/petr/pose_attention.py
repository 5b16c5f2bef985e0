"""PETR's pose-deformable attention on a selectable kernel.

Deformable DETR's module is ``posetr.ops.MSDeformAttn``, whose ``attn_fn`` picks posetr's op or the
PyTorch reference. ``PoseDeformableAttention`` is PETR's pose-deformable attention (opera
``MultiScaleDeformablePoseAttention``): P = K points per head and level, point k starting at keypoint k,
offsets scaled by half the extent (max - min) of the query's K keypoints.
"""
from torch import nn

from posetr.ops import MSDeformAttn


class PoseDeformableAttention(MSDeformAttn):
    """PETR's pose-deformable attention: ``n_points`` = K, one sampling point per keypoint.

    Sampling location of head m, level l, point k: ``ref_k + offset_{m,l,k} * extent * 0.5`` where
    ``extent`` = (max - min) of the query's keypoints in x and y (clamped to >= 1e-4). Offsets start at
    zero, so every point starts at its keypoint.

    Forward: query Float[N, Lq, C], reference_points Float[N, Lq, L, K, 2] (keypoints normalised to the
    padded map, per level), value Float[N, S, C], spatial_shapes Long[L, 2], level_start_index Long[L],
    padding_mask Bool[N, S] -> Float[N, Lq, C]. Arguments of ``__init__`` as :class:`posetr.ops.MSDeformAttn`.
    """

    def _reset_parameters(self):
        super()._reset_parameters()
        nn.init.constant_(self.sampling_offsets.bias, 0.0)

    def forward(self, query, reference_points, value, spatial_shapes, level_start_index, padding_mask=None):
        value, offsets, weights = self._project(query, value, padding_mask)
        lo = reference_points.amin(dim=-2)
        hi = reference_points.amax(dim=-2)
        extent = (hi - lo).clamp(min=1e-4)  # [N, Lq, L, 2]
        locations = reference_points[:, :, None] + offsets * extent[:, :, None, :, None, :] * 0.5
        return self._attend(value, spatial_shapes, level_start_index, locations, weights)
