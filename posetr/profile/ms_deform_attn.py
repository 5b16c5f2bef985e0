"""MSDA profile cases: PETR encoder, PETR pose decoder and Poseur decoder shapes."""
import torch

from posetr.ops.ms_deform_attn import ms_deform_attn
from posetr.ops.reference import ms_deform_attn_pytorch
from posetr.profile import Case, forward_backward, forward_only

# (name, batch N, levels (H, W), queries Lq, heads M, channels D, points P)
SHAPES = [
    # 800x1333 image: strides 8, 16, 32, 64; every pixel is a query.
    ("PETR encoder", 1, [(100, 167), (50, 84), (25, 42), (13, 21)], None, 8, 32, 4),
    ("PETR pose decoder", 1, [(100, 167), (50, 84), (25, 42), (13, 21)], 300, 8, 32, 17),
    # 256x192 crops, strides 4, 8, 16, 32; 17 keypoint queries.
    ("Poseur decoder", 32, [(64, 48), (32, 24), (16, 12), (8, 6)], 17, 8, 32, 4),
]


def make_inputs(N, levels, Lq, M, D, P, device, dtype=torch.float32, requires_grad=False, seed=0):
    """Random MSDA inputs; ``Lq=None`` means one query per value position (encoder)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S = int(areas.sum())
    Lq = S if Lq is None else Lq
    L = len(levels)
    value = torch.randn(N, S, M, D, generator=gen)
    locations = torch.rand(N, Lq, M, L, P, 2, generator=gen)
    weights = torch.rand(N, Lq, M, L, P, generator=gen)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    tensors = [t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in (value, locations, weights)]
    return tensors[0], shapes.to(device), starts.to(device), tensors[1], tensors[2]


def cases(device):
    result = []
    for name, N, levels, Lq, M, D, P in SHAPES:
        for mode, wrap, grad in (("forward", forward_only, False), ("forward+backward", forward_backward, True)):
            result.append(
                Case(
                    op="ms_deform_attn",
                    shape=name,
                    mode=mode,
                    setup=lambda N=N, levels=levels, Lq=Lq, M=M, D=D, P=P, grad=grad: make_inputs(
                        N, levels, Lq, M, D, P, device, requires_grad=grad
                    ),
                    posetr=wrap(ms_deform_attn),
                    reference=wrap(ms_deform_attn_pytorch),
                )
            )
    return result
