"""Object keypoint similarity (OKS): pairwise for matching, matched pairs and the OKS loss.

``torch.ops.posetr.pairwise_oks``, ``oks`` and ``_oks_backward`` are implemented in C++
(CPU) and CUDA with the math of ``csrc/oks/oks_math.h``; the gradient of ``oks`` is a C++
autograd kernel (per-call overhead matters at PETR's size); this module registers the fake
kernels and exposes the functional API.

OKS is pycocotools' ``COCOeval.computeOks``: for a person with area ``s`` (pixels^2) and a
prediction at squared pixel distance ``d^2`` from keypoint k,
``e_k = d^2 / ((2 sigma_k)^2 * (s + eps) * 2)`` with ``eps = np.spacing(1)``, and OKS is the
mean of ``exp(-e_k)`` over the person's labelled keypoints (v > 0).

People with no labelled keypoint get OKS 0 here. pycocotools scores them differently (by the
distance of each predicted keypoint to a box twice the person's box); such people carry no
keypoint supervision and are dropped from keypoint targets (PETR, ED-Pose), so 0 is the
cost/loss value of "nothing to match".
"""
import torch

from posetr._ext import HAS_EXTENSION, warn_fallback
from posetr.ops.reference import oks_loss_pytorch, oks_pytorch, pairwise_oks_pytorch

__all__ = ["pairwise_oks", "oks", "oks_loss"]

# oks_loss modes (PETR, ED-Pose) and reductions.
MODES = ("log", "linear")
REDUCTIONS = ("none", "mean", "sum")


def check_eps(mode, eps):
    """ValueError unless ``eps`` suits ``mode`` (the kernel's own check, also for the fallback)."""
    if mode == "log" and not eps > 0:
        raise ValueError(f"eps must be positive for the log transform, got {eps}")
    if mode == "linear" and not eps >= 0:
        raise ValueError(f"eps must be non-negative for the linear transform, got {eps}")


def _sigmas_tensor(sigmas, pred):
    """A sequence of sigmas as a tensor in pred's accumulation precision, on pred's device."""
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    return torch.as_tensor(sigmas, dtype=dtype, device=pred.device)


def pairwise_oks(pred, gt, visible, area, sigmas):
    """OKS of every (prediction, ground-truth person) pair, e.g. for Hungarian matching (cost ``-OKS``).

    Equals pycocotools ``COCOeval.computeOks`` for people with at least one labelled keypoint;
    people with none get 0 (see the module docstring).

    Args:
        pred (Tensor[N, K, 2] or Tensor[B, N, K, 2]): predicted keypoints (x, y), pixels;
            float64, float32, float16 or bfloat16.
        gt (Tensor[M, K, 2] or Tensor[B, M, K, 2]): ground-truth keypoints, pixels, dtype of ``pred``;
            batched inputs are padded to a common M (padded people are ignored by the caller).
        visible (Tensor[M, K] or Tensor[B, M, K], bool): True where the ground-truth keypoint is
            labelled (COCO v > 0).
        area (Tensor[M] or Tensor[B, M]): person area, pixels^2 (COCO segmentation area,
            CrowdPose box w * h); any floating dtype, non-negative.
        sigmas (Tensor[K] or sequence of K floats): per-keypoint OKS sigmas, positive
            (``posetr.data.keypoints.keypoint_info(name).sigmas``).

    Returns:
        Tensor[N, M] or Tensor[B, N, M] in the dtype of ``pred``, in [0, 1] (sums run in float32 for
        float16/bfloat16 inputs).

    Raises:
        ValueError: wrong ranks or shapes (K, batch size, trailing 2), non-floating ``pred``,
            ``gt`` of another dtype, non-bool ``visible``, negative or NaN ``area``, non-positive ``sigmas``.
        RuntimeError: inputs on different devices.

    Not differentiable (a matching cost): the output never requires grad, like a detached tensor.
    """
    if not isinstance(sigmas, torch.Tensor):
        sigmas = _sigmas_tensor(sigmas, pred)
    if not HAS_EXTENSION:
        warn_fallback("pairwise_oks")
        return pairwise_oks_pytorch(pred, gt, visible, area, sigmas)
    return torch.ops.posetr.pairwise_oks(pred, gt, visible, area, sigmas)


def oks(pred, gt, visible, area, sigmas):
    """OKS of matched pairs: ``pred[p]`` against ``gt[p]`` (pycocotools ``computeOks`` formula).

    Args:
        pred (Tensor[P, K, 2]): predicted keypoints, pixels; float64, float32, float16 or bfloat16.
        gt (Tensor[P, K, 2]): matched ground-truth keypoints, pixels, dtype of ``pred``.
        visible (Tensor[P, K], bool): True where the ground-truth keypoint is labelled (v > 0).
        area (Tensor[P]): person areas, pixels^2, non-negative.
        sigmas (Tensor[K] or sequence of K floats): per-keypoint OKS sigmas.

    Returns:
        Tensor[P] in the dtype of ``pred``; 0 for a pair whose person has no labelled keypoint.

    Raises:
        ValueError / RuntimeError: as :func:`pairwise_oks`.

    Differentiable with respect to ``pred`` (and ``gt``) through a fused backward kernel.
    """
    if not isinstance(sigmas, torch.Tensor):
        sigmas = _sigmas_tensor(sigmas, pred)
    if not HAS_EXTENSION:
        warn_fallback("oks")
        return oks_pytorch(pred, gt, visible, area, sigmas)
    return torch.ops.posetr.oks(pred, gt, visible, area, sigmas)


def oks_loss(pred, gt, visible, area, sigmas, mode="log", eps=1e-6, reduction="mean"):
    """OKS loss of matched pairs, fused with the OKS kernel.

    Both modes clamp the OKS first, as the official code does (``oks_loss`` in opera's
    opera/models/losses/oks_loss.py, used by PETR, and in ED-Pose's models/edpose/utils.py:
    ``oks = oks_overlaps(...).clamp(min=eps)``, then ``-oks.log()`` or ``1 - oks``):

    - ``mode="log"``: PETR's ``-log(clamp(OKS, min=eps))`` (Shi et al., CVPR 2022);
    - ``mode="linear"``: ED-Pose's ``1 - clamp(OKS, min=eps)`` (Yang et al., ICLR 2023);
      ``eps=0`` gives the paper's unclamped ``1 - OKS``.

    Below ``eps`` the loss is constant and its gradient 0, as with ``torch.clamp``. A NaN
    in ``pred`` or ``gt`` gives a NaN loss for its pair and NaN gradients, as autograd
    through the reference (:func:`posetr.ops.reference.oks_loss_pytorch`) does.

    Args:
        pred, gt, visible, area, sigmas: as :func:`oks` (Tensor[P, K, 2], Tensor[P, K, 2],
            Tensor[P, K] bool, Tensor[P] pixels^2, Tensor[K]).
        mode (str): "log" or "linear".
        eps (float): lower clamp of OKS: positive for ``mode="log"``, non-negative for
            ``mode="linear"``. Default 1e-6, opera's and ED-Pose's.
        reduction (str): "none" (Tensor[P]), "mean" over the P pairs (0 when P == 0, still
            differentiable) or "sum". PETR-style normalisation by the number of people across
            processes: use "sum" and divide.

    Returns:
        Tensor[P] or a scalar, in the dtype of ``pred``.

    Raises:
        ValueError: unknown ``mode`` or ``reduction``, ``eps`` out of range for the mode,
            and every error of :func:`oks`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    check_eps(mode, eps)
    if not isinstance(sigmas, torch.Tensor):
        sigmas = _sigmas_tensor(sigmas, pred)
    if not HAS_EXTENSION:
        warn_fallback("oks_loss")
        return oks_loss_pytorch(pred, gt, visible, area, sigmas, mode, eps, reduction)
    loss = torch.ops.posetr.oks(pred, gt, visible, area, sigmas, mode, eps)
    if reduction == "none":
        return loss
    if reduction == "sum" or loss.numel() == 0:
        return loss.sum()
    return loss.mean()


if HAS_EXTENSION:

    @torch.library.register_fake("posetr::pairwise_oks")
    def _pairwise_oks_fake(pred, gt, visible, area, sigmas):
        torch._check(
            pred.dim() in (3, 4), lambda: f"pred must be [N, K, 2] or [B, N, K, 2], got {tuple(pred.shape)}"
        )
        torch._check(gt.dim() == pred.dim(), lambda: f"gt must have the rank of pred, got {tuple(gt.shape)}")
        return pred.new_empty((*pred.shape[:-2], gt.shape[-3]))

    @torch.library.register_fake("posetr::oks")
    def _oks_fake(pred, gt, visible, area, sigmas, transform="identity", eps=1e-6):
        torch._check(pred.dim() == 3, lambda: f"pred must be [P, K, 2], got {tuple(pred.shape)}")
        return pred.new_empty(pred.shape[:1])

    @torch.library.register_fake("posetr::_oks_backward")
    def _oks_backward_fake(grad, pred, gt, visible, area, sigmas, transform, eps):
        return pred.new_empty(pred.shape)

    # The gradient of posetr::oks is registered in C++ (csrc/oks/oks_autograd.cpp).
