"""``OKSLoss``: the OKS loss of matched keypoint pairs as a module, for DETR-style criteria."""
import torch
from torch import nn

from posetr.ops.oks import MODES, REDUCTIONS, check_eps, oks_loss


class OKSLoss(nn.Module):
    """OKS loss of matched pairs: PETR's ``-log(clamp(OKS, eps))`` or ED-Pose's
    ``1 - clamp(OKS, eps)``, as opera's and ED-Pose's ``OKSLoss`` compute them
    (see :func:`posetr.ops.oks_loss`).

    Args:
        sigmas (sequence of K floats or Tensor[K]): per-keypoint OKS sigmas, e.g.
            ``posetr.data.keypoints.keypoint_info("coco").sigmas``; kept as a non-persistent buffer
            (it follows ``.to(device)`` and stays out of checkpoints).
        mode (str): "log" or "linear".
        eps (float): lower clamp of OKS (positive for "log", non-negative for "linear";
            0 gives the unclamped ``1 - OKS``).
        reduction (str): "none", "mean" or "sum".

    Raises:
        ValueError: ``sigmas`` not 1-D, unknown ``mode``/``reduction``, ``eps`` out of range (checked
            here, not at the first call).

    Weights are applied by the caller (criteria return unweighted losses).
    """

    def __init__(self, sigmas, mode="log", eps=1e-6, reduction="mean"):
        super().__init__()
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        if sigmas.dim() != 1:
            raise ValueError(f"sigmas must be 1-D [K], got shape {tuple(sigmas.shape)}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        check_eps(mode, eps)
        self.register_buffer("sigmas", sigmas.clone(), persistent=False)
        self.mode = mode
        self.eps = eps
        self.reduction = reduction

    def forward(self, pred, gt, visible, area):
        """pred Tensor[P, K, 2], gt Tensor[P, K, 2] (pixels), visible Tensor[P, K] bool, area Tensor[P]
        (pixels^2) -> the loss (see :func:`posetr.ops.oks_loss`)."""
        return oks_loss(pred, gt, visible, area, self.sigmas, mode=self.mode, eps=self.eps, reduction=self.reduction)

    def extra_repr(self):
        return f"num_keypoints={self.sigmas.numel()}, mode={self.mode!r}, eps={self.eps}, reduction={self.reduction!r}"
