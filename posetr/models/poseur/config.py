"""Poseur's model configuration (``model.name: poseur``): one dataclass, every field defaulted and commented.

Sources: the paper (Mao et al., "Poseur: Direct Human Pose Regression with Transformers", ECCV 2022,
../shared/papers/002_6e8dd4424d22bb94.txt) and the official code (aim-uofa/Poseur, an mmpose 0.x fork:
``mmpose/models/heads/poseur_head.py``, ``mmpose/models/utils/transformer.py``,
``mmpose/models/losses/rle_loss.py``, ``mmpose/models/detectors/poseur.py``, ``configs/poseur/``); spec
../shared/specs/poseur.md. Where paper and code disagree the default is the code's and the paper's choice is
an option: [C] the official code, [P] the paper, [D] a reading of ours. The defaults are the released
Poseur-R50 256x192 model (6 decoder layers; README: 75.5 AP on COCO val2017).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from posetr.models.common.config import BaseModelConfig

BACKBONES = ("resnet", "hrnet", "mobilenetv2")
INITS = ("official", "deformable_detr")
LEVEL_SETS = {"C2-C5": (1, 2, 3, 4), "C3-C5": (2, 3, 4), "C4-C5": (3, 4), "C5": (4,)}  # -> ResNet out_indices
RLE_NORMALIZATIONS = ("batch", "queries")
FLIP_FUSIONS = ("default", "type2")


@dataclass
class PoseurConfig(BaseModelConfig):
    WEIGHT_FREE_FIELDS: ClassVar[tuple[str, ...]] = BaseModelConfig.WEIGHT_FREE_FIELDS + (
        "init", "rle_normalize", "loss_enc", "loss_dec", "flip_fuse", "flip_convention")
    # name, ops, dataset, num_keypoints: see BaseModelConfig
    name: str = "poseur"
    # ---- backbone: 4 levels at strides 4, 8, 16, 32 [C] ----
    # "resnet" (C2-C5) | "hrnet" (the 4 branches of stage 4, multiscale_output=True) | "mobilenetv2" (x1.0,
    # out_indices (1, 2, 4, 7): 24, 32, 96, 1280 channels)
    backbone: str = "resnet"
    backbone_depth: int = 50  # ResNet depth: 18 | 34 | 50 (ignored for HRNet)
    # ResNet: stem channels (64 = torchvision; narrower: a tiny model from scratch); HRNet: W (32 or 48)
    backbone_width: int = 64
    backbone_norm: str = "batch"  # "batch" (the official SyncBN, trainable) | "group" (from scratch, tiny batches)
    backbone_init: str = "imagenet"  # "imagenet" (official): training needs pretrained_backbone; "scratch": random
    pretrained_backbone: str | None = None  # torchvision/mmcls ResNet or openmmlab HRNet ImageNet weights (.pth)
    # ResNet levels in the memory [C: C2-C5, strides 4-32; P Table 1d ablates Res5 / Res4-5 / Res3-5 / Res2-5];
    # the coarse branch always pools the coarsest level. HRNet and MobileNetV2: C2-C5 only (their 4 outputs)
    levels: str = "C2-C5"
    # ---- neck, memory and transformer [C: ChannelMapper 1x1 conv without bias + GN(32), zero encoder layers] ----
    d_model: int = 256  # C: neck output, queries, EMSDA, FFN input
    n_heads: int = 8  # heads of the self-attention and of EMSDA
    n_points: int = 4  # EMSDA sampling points per head and level
    dim_feedforward: int = 1024  # FFN hidden size
    dropout: float = 0.1  # self-attention (probabilities and residual), EMSDA residual, FFN
    dec_layers: int = 6  # N_d [C: every released COCO config 6; P: 3 "by default" (Table 1e)]
    num_reg_fcs: int = 2  # hidden Linear(C, C) layers of each per-layer coordinate / sigma branch [C]
    # ---- noisy reference points (training only) [C: PoseurTransformer defaults; P: "random coordinates"] ----
    num_noise_groups: int = 3  # extra query groups of copies of the coarse keypoints (num_noise_sample)
    num_noise_points: int = 4  # perturbed slots = num_noise_groups x this (num_noise_verts), same for the batch
    noise_sigma: float = 0.2  # covariance of the Gaussian offsets (std sqrt(0.2) ~ 0.447), offsets clipped to +-1
    # ---- initialisation [C: spec section 2.3] ----
    # "official": the transformer's blanket Xavier re-initialisation reaches EMSDA (only its offset bias
    # grid and zero attention bias stay) and the coarse linears (gain 1); "deformable_detr": EMSDA keeps
    # Deformable DETR's init (zero offset and attention weights, Xavier value/output projections, zero
    # biases) and the coarse linears keep their intended gain 0.01
    init: str = "official"
    # ---- RLE loss [C: RLELoss_poseur] ----
    # "batch": each RLE term is summed over queries and axes and divided by the batch size B, the official
    # ``loss.sum() / len(loss)`` (its training logs: enc_rle_loss ~75, dec_rle_loss_i ~155 at the start);
    # "queries": divided by B x queries (the spec's reading: a per-keypoint mean)
    rle_normalize: str = "batch"
    loss_enc: float = 1.0  # weight of enc_rle_loss (the coarse FC's RLE term)
    loss_dec: float = 1.0  # weight of every decoder layer's dec_rle_loss_i [C: deep supervision, all weights 1]
    # ---- inference [C: detectors/poseur.py] ----
    # flip test fusion (``filp_fuse_type``): "default": average the keypoints and the mean(1 - sigma)
    # scores; "type2" (the README's evaluation): weights p = 0.7 (1 - e^(-0.2/sigma_x)) (1 - e^(-0.2/sigma_y)),
    # keypoints averaged with weights p^5, score the mean p
    flip_fuse: str = "default"
    # Un-flip rule of the flip test: "unit": x -> 1 - x (official, ``fliplr_rle_regression(center_x=0.5)``,
    # half a crop pixel off for ``images.flip(-1)``) | "pixel": x -> (W - 1) / W - x (exact)
    flip_convention: str = "unit"
