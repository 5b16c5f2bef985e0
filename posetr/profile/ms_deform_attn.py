"""MSDA profile cases: PETR encoder, PETR pose decoder and Poseur decoder shapes.

Sampling locations follow what the models do. Encoder queries ("local") sample
around their own pixel, as Deformable DETR's encoder does: reference point = the
query's pixel centre, offsets = the module's initial pattern (head h in direction
2*pi*h/M, point p at p + 1 pixels of each level) plus N(0, 2 px) noise. Decoder
queries ("uniform") sample anywhere in the image. "PETR encoder, uniform" is a
stress case: encoder shape with every sample anywhere (no cache locality).

float32 everywhere; bfloat16 too on CUDA (and in the quick cases, which check the profile).
Bytes moved (posetr.profile.pass_bytes): reads value, sampling_locations and attention_weights,
writes the [N, Lq, M * D] output; the backward writes a gradient of each of the three.
"""
import math

import torch

from posetr.ops.ms_deform_attn import ms_deform_attn
from posetr.ops.reference import ms_deform_attn_pytorch
from posetr.profile import both_modes, pass_bytes, tensor_bytes

PETR_LEVELS = [(100, 167), (50, 84), (25, 42), (13, 21)]  # 800x1333 image, strides 8, 16, 32, 64
POSEUR_LEVELS = [(64, 48), (32, 24), (16, 12), (8, 6)]  # 256x192 crops, strides 4, 8, 16, 32

# (name, batch N, levels (H, W), queries Lq (None: one per pixel), heads M, channels D, points P, locations)
SHAPES = [
    ("PETR encoder", 1, PETR_LEVELS, None, 8, 32, 4, "local"),
    ("PETR encoder, uniform", 1, PETR_LEVELS, None, 8, 32, 4, "uniform"),
    ("PETR pose decoder", 1, PETR_LEVELS, 300, 8, 32, 17, "uniform"),
    ("Poseur decoder", 32, POSEUR_LEVELS, 17, 8, 32, 4, "uniform"),
]
QUICK_SHAPES = [
    ("quick encoder", 1, [(6, 8), (3, 4)], None, 2, 8, 2, "local"),
    ("quick decoder", 2, [(6, 8), (3, 4)], 5, 2, 8, 3, "uniform"),
]
DTYPES = {"cpu": (torch.float32,), "cuda": (torch.float32, torch.bfloat16)}


def local_locations(levels, N, M, P, gen):
    """Encoder sampling locations [N, S, M, L, P, 2]: around each query's own pixel."""
    sizes = torch.tensor([(w, h) for h, w in levels], dtype=torch.float32)  # (W, H) per level
    centres = []
    for h, w in levels:
        ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        centres.append(torch.stack([xs, ys], -1).view(-1, 2))
    reference = torch.cat(centres)  # [S, 2], normalised
    thetas = torch.arange(M, dtype=torch.float32) * (2 * math.pi / M)
    directions = torch.stack([thetas.cos(), thetas.sin()], -1)
    directions = directions / directions.abs().max(-1, keepdim=True)[0]
    steps = torch.arange(1, P + 1, dtype=torch.float32)
    pattern = directions[:, None, None, :] * steps[None, None, :, None]  # [M, 1, P, 2] pixels
    L = len(levels)
    offsets = pattern + 2.0 * torch.randn(N, reference.shape[0], M, L, P, 2, generator=gen)
    return reference[None, :, None, None, None, :] + offsets / sizes[None, None, None, :, None, :]


def make_inputs(
    N, levels, Lq, M, D, P, device, dtype=torch.float32, requires_grad=False, seed=0, locations="uniform"
):
    """Random MSDA inputs; ``Lq=None`` means one query per value position (encoder);
    ``locations`` is "uniform" (anywhere in [0, 1]) or "local" (around each query's pixel)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    S = int(areas.sum())
    Lq = S if Lq is None else Lq
    L = len(levels)
    value = torch.randn(N, S, M, D, generator=gen)
    if locations == "local":
        locations = local_locations(levels, N, M, P, gen)
    else:
        locations = torch.rand(N, Lq, M, L, P, 2, generator=gen)
    weights = torch.rand(N, Lq, M, L, P, generator=gen)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    tensors = [t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in (value, locations, weights)]
    return tensors[0], shapes.to(device), starts.to(device), tensors[1], tensors[2]


def attention_bytes(inputs, out_channels, backward):
    """posetr's compulsory bytes for one MSDA or EMSDA call on ``inputs`` (value, shapes, starts,
    sampling_locations, attention_weights, then EMSDA's projection weight and bias): reads every input
    but the level layout, writes the [N, Lq, M * out_channels] output; the backward a gradient of each."""
    value, _, _, locations = inputs[:4]
    reads = tensor_bytes(value, *inputs[3:])
    N, Lq, M = locations.shape[:3]
    return pass_bytes(reads, N * Lq * M * out_channels * value.element_size(), grads=reads if backward else None)


def cases(device, quick=False):
    result = []
    dtypes = (torch.float32, torch.bfloat16) if quick else DTYPES[torch.device(device).type]
    for name, N, levels, Lq, M, D, P, locations in QUICK_SHAPES if quick else SHAPES:
        for dtype in dtypes:
            result += both_modes(
                op="ms_deform_attn",
                shape=name,
                dtype=str(dtype).removeprefix("torch."),
                reference_name="grid_sample",
                setup=lambda grad, N=N, levels=levels, Lq=Lq, M=M, D=D, P=P, loc=locations, dtype=dtype: make_inputs(
                    N, levels, Lq, M, D, P, device, dtype=dtype, requires_grad=grad, locations=loc
                ),
                posetr=ms_deform_attn,
                reference=ms_deform_attn_pytorch,
                bytes_model=lambda inputs, backward: attention_bytes(inputs, inputs[0].shape[3], backward),
            )
    return result
