"""posetr's kernels: functional APIs, modules and drop-in aliases."""
from posetr.ops.ms_deform_attn import (
    MSDeformAttnFunction,
    MultiScaleDeformableAttnFunction,
    ms_deform_attn,
    ms_deform_attn_backward,
)
from posetr.ops.ms_deform_attn_module import MSDeformAttn
from posetr.ops.emsda import emsda, emsda_sample, emsda_sample_backward
from posetr.ops.emsda_module import EMSDeformAttn
from posetr.ops.oks import oks, oks_loss, pairwise_oks
from posetr.ops.oks_loss_module import OKSLoss
from posetr.ops.lap import assignment_to_pairs, batched_linear_sum_assignment, linear_sum_assignment
from posetr.ops import reference

__all__ = [
    "EMSDeformAttn",
    "MSDeformAttn",
    "MSDeformAttnFunction",
    "MultiScaleDeformableAttnFunction",
    "ms_deform_attn",
    "ms_deform_attn_backward",
    "emsda",
    "emsda_sample",
    "emsda_sample_backward",
    "OKSLoss",
    "oks",
    "oks_loss",
    "pairwise_oks",
    "reference",
    "linear_sum_assignment",
    "batched_linear_sum_assignment",
    "assignment_to_pairs",
]
