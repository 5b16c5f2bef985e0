"""Poseur-R50: the whole training step (forward with the noisy groups, every RLE term, backward) on
``ops: posetr`` vs ``ops: reference``, and the 6-layer query decoder alone (forward + backward) with the fused
EMSDA op vs the official formulation (the value repeated per head + MSDA + per-head projection).

Step: ``PoseurConfig()`` (ResNet-50, 6 decoder layers) on STEP_BATCH crops of 256 x 192, dropout off; the
reference model runs EMSDA as Poseur does, on the grid_sample MSDA oracle (``posetr.ops.reference``), with
the same weights (flows included).
Decoder: the released decoder (C 256, 8 heads, 4 levels x 4 points, FFN 1024) on DECODER_BATCH crops of
256 x 192 (memory of 4080 tokens, 68 training queries), dropout off; the official formulation runs on
posetr's compiled MSDA kernel, as the official code runs mmcv's (``posetr.profile.emsda.repeat_msda_einsum``).
Peak memory of the decoder, each variant in a fresh process (CPU max RSS; on CUDA torch's peak allocation)::

    python -m posetr.profile.poseur_step --memory [--device cuda]

``quick``: a tiny Poseur on 2 crops of 64 x 48, to check the cases run.
"""
import argparse
import dataclasses
import json
import resource
import subprocess
import sys

import torch

from posetr.ops.emsda import emsda
from posetr.profile import Case
from posetr.profile.emsda import repeat_msda_einsum
from posetr.profile.model_pair import build_model_pair, train_step

STEP_BATCH = 4
DECODER_BATCH = 32
INPUT_SIZE = (256, 192)
LEVELS = [(64, 48), (32, 24), (16, 12), (8, 6)]  # strides 4-32 of a 256 x 192 crop
QUICK_MODEL = dict(backbone_depth=18, backbone_width=8, backbone_norm="group", d_model=32, n_heads=4,
                   dim_feedforward=64, dec_layers=2)


def _config(quick: bool, **fields):
    from posetr.models.poseur import PoseurConfig

    return dataclasses.replace(PoseurConfig(backbone_init="scratch"), dropout=0.0, **(QUICK_MODEL if quick else {}),
                               **fields)


def _targets(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, 17, 2, generator=g) * 0.8 + 0.1
    return [{"keypoints": torch.cat([xy[b], torch.full((17, 1), 2.0)], -1), "target_weight": torch.ones(17)}
            for b in range(batch)]


def _step_setup(device, quick):
    batch, size = (2, (64, 48)) if quick else (STEP_BATCH, INPUT_SIZE)
    steps = build_model_pair(_config(quick), device)
    images = torch.randn(batch, 3, *size, device=device)
    masks = torch.zeros(batch, *size, dtype=torch.bool, device=device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in _targets(batch)]
    return steps, images, masks, targets


def official_emsda(value, shapes, starts, locations, weights, proj_weight, proj_bias, im2col_step=64):
    """The official formulation with EMSDA's signature: repeat + posetr's MSDA kernel + einsum."""
    return repeat_msda_einsum(value, shapes, starts, locations, weights, proj_weight, proj_bias)


DECODER_VARIANTS = {"posetr": emsda, "reference": official_emsda}


def build_decoder(attn_fn, quick=False):
    """The released decoder (or the quick one) on ``attn_fn``, seeded so both variants hold the same weights."""
    from posetr.models.common.deformable_decoder import DeformableDecoderLayer
    from posetr.models.poseur.decoder import PoseurDecoder, emsda_attention

    cfg = _config(quick)
    torch.manual_seed(0)
    layer = DeformableDecoderLayer(d_model=cfg.d_model, n_levels=len(LEVELS), n_heads=cfg.n_heads,
                                   n_points=cfg.n_points, dim_feedforward=cfg.dim_feedforward, dropout=0.0,
                                   attn_fn=attn_fn, attention=emsda_attention)
    return PoseurDecoder(layer=layer, num_layers=cfg.dec_layers, d_model=cfg.d_model, num_reg_fcs=cfg.num_reg_fcs)


def decoder_inputs(device, quick=False, seed=0):
    """(decoders {variant: PoseurDecoder}, query [B, 4, 17, C], query_pos [17, C], reference [B, 68, 2],
    memory [B, S, C], spatial_shapes, level_start_index), memory and query requiring gradients."""
    cfg = _config(quick)
    batch, levels = (2, [(16, 12), (8, 6), (4, 3), (2, 2)]) if quick else (DECODER_BATCH, LEVELS)
    decoders = {name: build_decoder(fn, quick).to(device) for name, fn in DECODER_VARIANTS.items()}
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.int64)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    C, K = cfg.d_model, cfg.num_keypoints
    groups = 1 + cfg.num_noise_groups
    query = torch.randn(batch, groups, K, C, generator=g)
    query_pos = torch.randn(K, C, generator=g)
    reference = torch.rand(batch, groups * K, 2, generator=g)
    memory = torch.randn(batch, int(areas.sum()), C, generator=g)
    tensors = [t.to(device) for t in (query, query_pos, reference, memory)]
    for t in (tensors[0], tensors[3]):
        t.requires_grad_(True)
    return (decoders, *tensors, shapes.to(device), starts.to(device))


def decoder_step(variant):
    """A Case callable: the ``variant`` decoder's forward and the backward of its summed outputs."""

    def run(inputs):
        decoders, query, query_pos, reference, memory, shapes, starts = inputs
        decoder = decoders[variant]
        decoder.zero_grad(set_to_none=True)
        query.grad = memory.grad = None
        mu, sigma = decoder(query, query_pos, reference, memory, shapes, starts)
        (mu.sum() + sigma.sum()).backward()

    return run


def cases(device, quick=False):
    """The Poseur-R50 training step (4 crops) and its decoder (32 crops, forward + backward)."""
    step_shape = "tiny Poseur 2x3x64x48" if quick else f"Poseur-R50 {STEP_BATCH}x3x{INPUT_SIZE[0]}x{INPUT_SIZE[1]}"
    decoder_shape = "tiny decoder, 2x68 queries" if quick else f"6 layers, {DECODER_BATCH}x68 queries, 4080 tokens"
    return [
        Case(op="poseur_step", shape=step_shape, mode="train step", reference_name="ops: reference",
             setup=lambda: _step_setup(device, quick), posetr=train_step("posetr"), reference=train_step("reference")),
        Case(op="poseur_decoder_step", shape=decoder_shape, mode="forward+backward",
             reference_name="repeat + MSDA + projection", setup=lambda: decoder_inputs(device, quick),
             posetr=decoder_step("posetr"), reference=decoder_step("reference")),
    ]


def _measure(variant, device):
    """Peak memory (MiB) of one decoder forward+backward of ``variant`` in this process, above its inputs."""
    inputs = decoder_inputs(device)
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        decoder_step(variant)(inputs)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1]) * resource.getpagesize()
    decoder_step(variant)(inputs)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", action="store_true", help="peak memory of each decoder variant, a process each")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--measure", choices=sorted(DECODER_VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps({"variant": args.measure, "peak_mib": _measure(args.measure, args.device)}))
        return
    if not args.memory:
        parser.print_help()
        return
    peaks = {}
    for variant in DECODER_VARIANTS:
        out = subprocess.run([sys.executable, "-m", "posetr.profile.poseur_step", "--measure", variant,
                              "--device", args.device], check=True, capture_output=True, text=True)
        peaks[variant] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
        print(f"decoder {variant:<10} ({args.device}) peak above inputs {peaks[variant]:9.1f} MiB", flush=True)
    print(f"official formulation / fused: {peaks['reference'] / peaks['posetr']:.1f}x")


if __name__ == "__main__":
    main()
