"""OKS profile cases at PETR's sizes: the matching cost over every (query, person) pair and
the OKS loss on the matched pairs, posetr's kernels against the same computation written
with PyTorch ops (posetr.ops.reference: broadcast, exp, masked mean).

Bytes moved (posetr.profile.pass_bytes): reads pred, gt, visible, area and sigmas; pairwise
writes the [(B,) N, M] OKS, the loss its per-pair values, and the backward the gradient of pred."""
import torch

from posetr.data.keypoints import COCO_SIGMAS
from posetr.ops.oks import oks_loss, pairwise_oks
from posetr.ops.reference import oks_loss_pytorch, pairwise_oks_pytorch
from posetr.profile import Case, pass_bytes, tensor_bytes

K = 17
# (name, batch B or None for the flattened DETR-style cost matrix, predictions N, people M)
PAIRWISE_SHAPES = [
    # PETR's matcher: 2 images x 300 queries against the 26 people of the batch.
    ("PETR matching 600x26", None, 600, 26),
    # The same work per image: [2, 300, 13] padded.
    ("PETR matching 2x300x13", 2, 300, 13),
]
# (name, matched pairs P)
LOSS_SHAPES = [("PETR loss 600 pairs", 600)]
QUICK_PAIRWISE_SHAPES = [("quick 12x3", None, 12, 3), ("quick 2x6x3", 2, 6, 3)]
QUICK_LOSS_SHAPES = [("quick loss 8 pairs", 8)]


def make_people(M, batch, device, dtype=torch.float32, seed=0):
    """Ground-truth keypoints (pixels, 800x1333 image), labels (70 %) and areas of M people."""
    gen = torch.Generator().manual_seed(seed)
    center = torch.rand(*batch, M, 1, 2, generator=gen) * torch.tensor([1333.0, 800.0])
    size = 30 + torch.rand(*batch, M, 1, 1, generator=gen) * 300
    gt = center + (torch.rand(*batch, M, K, 2, generator=gen) - 0.5) * size
    visible = torch.rand(*batch, M, K, generator=gen) < 0.7
    area = size[..., 0, 0] ** 2 * 0.5
    return gt.to(device, dtype), visible.to(device), area.to(device, dtype)


def pairwise_inputs(B, N, M, device, dtype=torch.float32):
    batch = () if B is None else (B,)
    gt, visible, area = make_people(M, batch, device, dtype)
    gen = torch.Generator().manual_seed(1)
    pred = (torch.rand(*batch, N, K, 2, generator=gen) * torch.tensor([1333.0, 800.0])).to(device, dtype)
    return pred, gt, visible, area, torch.tensor(COCO_SIGMAS, device=device, dtype=dtype)


def loss_inputs(P, device, dtype=torch.float32):
    gt, visible, area = make_people(P, (), device, dtype)
    gen = torch.Generator().manual_seed(2)
    pred = gt + (torch.randn(gt.shape, generator=gen) * 15).to(device, dtype)
    return pred.requires_grad_(), gt, visible, area, torch.tensor(COCO_SIGMAS, device=device, dtype=dtype)


def _matching(fn):
    def run(inputs):
        with torch.no_grad():
            return fn(*inputs)

    return run


def _loss(fn, mode):
    def run(inputs):
        loss = fn(*inputs, mode=mode)
        loss.backward()
        return loss

    return run


def pairwise_bytes(inputs):
    pred, gt = inputs[:2]
    return pass_bytes(tensor_bytes(*inputs), pred.numel() // (K * 2) * gt.shape[-3] * pred.element_size())


def loss_bytes(inputs):
    pred = inputs[0]
    return pass_bytes(tensor_bytes(*inputs), pred.shape[0] * pred.element_size(), grads=tensor_bytes(pred))


def cases(device, quick=False):
    result = []
    for name, B, N, M in QUICK_PAIRWISE_SHAPES if quick else PAIRWISE_SHAPES:
        result.append(
            Case(
                op="pairwise_oks",
                shape=name,
                mode="forward",
                reference_name="PyTorch composite",
                setup=lambda B=B, N=N, M=M: pairwise_inputs(B, N, M, device),
                posetr=_matching(pairwise_oks),
                reference=_matching(pairwise_oks_pytorch),
                bytes_moved=pairwise_bytes,
            )
        )
    for name, P in QUICK_LOSS_SHAPES if quick else LOSS_SHAPES:
        for mode in ("log", "linear"):
            result.append(
                Case(
                    op=f"oks_loss ({mode})",
                    shape=name,
                    mode="forward+backward",
                    reference_name="PyTorch composite",
                    setup=lambda P=P: loss_inputs(P, device),
                    posetr=_loss(oks_loss, mode),
                    reference=_loss(oks_loss_pytorch, mode),
                    bytes_moved=loss_bytes,
                )
            )
    return result
