"""TFPose's FLOPs beside the paper's (Tables 1-5), and its parameter counts.

``python -m posetr.models.tfpose.flops`` prints, for every model the paper gives a GFLOPs figure for, the
GMACs posetr counts with ``torch.utils.flop_counter`` (FLOPs / 2; see posetr/models/common/flops.py for the
convention), with and without the deformable sampling, and the inference parameter count (no heatmap
branch). Batch 1, eval mode, ops posetr.
"""
from __future__ import annotations

import dataclasses

import torch

from posetr.models.tfpose.config import TFPoseConfig

_R18_NE0 = dict(backbone_depth=18, enc_layers=0, levels="C2-C5")  # Tables 1-2: the memory keeps C2
_R18_NE6 = dict(backbone_depth=18)

# (description, config overrides, input (H, W), the paper's GFLOPs)
PAPER_MODELS = [
    ("R-50 NE6 ND6 (Table 5)", {}, (256, 192), 9.2),
    ("R-50 NE4 ND6 (Table 5)", dict(enc_layers=4), (256, 192), 7.7),
    ("R-50 NE6 ND6 (Table 5)", {}, (384, 288), 20.4),
    *[(f"R-18 NE6 ND{d} (Table 3)", dict(_R18_NE6, dec_layers=d), (256, 192), g)
      for d, g in zip(range(1, 7), (6.32, 6.41, 6.50, 6.59, 6.68, 6.77))],
    ("R-18 NE0 ND6 (Tables 1-2)", _R18_NE0, (256, 192), 3.61),
    ("R-18 NE0 ND6 w/o q2q (Table 1)", dict(_R18_NE0, q2q=False), (256, 192), 3.51),
    ("R-18 NE0 ND6 c=128 (Table 2)", dict(_R18_NE0, d_model=128), (256, 192), 2.28),
]


def model_gmacs(cfg: TFPoseConfig, input_size, *, sampling: bool = False) -> float:
    """GMACs of TFPose ``cfg`` on one crop of ``input_size`` (H, W), eval mode (FlopCounterMode FLOPs / 2)."""
    from posetr.models import build_model
    from posetr.models.common.flops import count_flops

    model = build_model(cfg)[0].eval()
    images = torch.randn(1, 3, *input_size)
    masks = torch.zeros(1, *input_size, dtype=torch.bool)
    return count_flops(model, images, masks, sampling=sampling) / 2e9


def inference_parameters(cfg: TFPoseConfig) -> int:
    """Parameters of TFPose ``cfg`` without the training-only heatmap branch."""
    from posetr.models import build_model

    model = build_model(dataclasses.replace(cfg, aux_heatmap=False))[0]
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    print(f"{'model':<32}{'input':>9}{'paper':>8}{'GMAC':>9}{'+sampling':>11}{'ratio':>8}{'params':>13}")
    for name, overrides, size, paper in PAPER_MODELS:
        torch.manual_seed(0)
        cfg = dataclasses.replace(TFPoseConfig(), **overrides)
        plain, full = model_gmacs(cfg, size), model_gmacs(cfg, size, sampling=True)
        print(f"{name:<32}{size[0]:>5}x{size[1]:<3}{paper:>8.2f}{plain:>9.3f}{full:>11.3f}{plain / paper:>8.3f}"
              f"{inference_parameters(cfg):>13,}", flush=True)


if __name__ == "__main__":
    main()
