"""posetr's kernels: functional APIs, modules and drop-in aliases."""
from posetr.ops.ms_deform_attn import (
    MSDeformAttnFunction,
    MultiScaleDeformableAttnFunction,
    ms_deform_attn,
    ms_deform_attn_backward,
)
from posetr.ops.ms_deform_attn_module import MSDeformAttn
from posetr.ops import reference

__all__ = [
    "MSDeformAttn",
    "MSDeformAttnFunction",
    "MultiScaleDeformableAttnFunction",
    "ms_deform_attn",
    "ms_deform_attn_backward",
    "reference",
]
