"""POET's model configuration (``model.name: poet``): one dataclass, every field defaulted and commented.

The defaults are the official code's model (amathislab/poet ``main.py`` defaults, ``models/poet.py``) with
the README command's matching and loss weights (``--set_cost_kpts=4 --set_cost_ctrs=0.5
--set_cost_deltas=0.5 --set_cost_kpts_class=0.2 --kpts_loss_coef=4 --ctrs_loss_coef=0.5
--deltas_loss_coef=0.5 --kpts_class_loss_coef=0.2 --num_queries=50``); ``../shared/specs/poet.md`` lists
every fact with its source. Where paper and code disagree the field follows the code and its comment names
the paper's choice.
"""
from __future__ import annotations

from dataclasses import dataclass

from posetr.models.common.config import BaseModelConfig


@dataclass
class POETConfig(BaseModelConfig):
    # name, ops, dataset, num_keypoints: see BaseModelConfig
    name: str = "poet"
    # ---- backbone (DETR's: torchvision ResNet with FrozenBatchNorm, C5 only) ----
    backbone_depth: int = 50  # ResNet depth: 18 | 34 (BasicBlock, C5 = 512 channels) or 50 (Bottleneck, 2048)
    backbone_width: int = 64  # channels of the stem; 64 is torchvision's ResNet (narrower: a tiny model from scratch)
    backbone_norm: str = "frozen_bn"  # "frozen_bn" (DETR) | "batch" | "group" (a small model trained from scratch)
    backbone_init: str = "imagenet"  # "imagenet" (official): training needs pretrained_backbone; "scratch": random
    pretrained_backbone: str | None = None  # torchvision / mmdet / mmpose ResNet weights (.pth); never downloaded
    train_stem: bool = False  # train conv1, bn1 and layer1 too; DETR/POET freeze them (by name, pretrained or not)
    dilation: bool = False  # DC5: layer4's stride replaced by dilation (stride 16; official --dilation5)
    # ---- transformer (DETR's, models/transformer.py) ----
    d_model: int = 256  # hidden size of the transformer and the heads (official --hidden_dim)
    n_heads: int = 8  # attention heads
    enc_layers: int = 6  # encoder layers
    dec_layers: int = 6  # decoder layers (the last gives the prediction, the others the auxiliary outputs)
    dim_feedforward: int = 2048  # FFN hidden size of every layer
    dropout: float = 0.1  # dropout in attention, FFN and residual paths
    num_queries: int = 50  # pose slots N: 50 code default and README; 25 paper and released checkpoint
    # ---- classes and targets ----
    class_head: str = "official"  # "official": 3 logits (0 = person without a visible joint, 1 = person,
    #   2 = no-object; the code's num_classes = 2) | "binary": 2 logits (person, no-object; the paper's
    #   human vs non-object, people without a visible joint leave the targets)
    visible_threshold: int = 2  # COCO v >= this is a visible joint: 2 = official (occluded v = 1 joints are
    #   invisible: no position loss, visibility target 0) | 1 = every labelled joint (COCO's OKS convention)
    # ---- matcher (cost = class + kpts * L1 abs + ctrs * L2 centre + deltas * L1 offsets + vis * L2 visibility) ----
    cost_class: float = 1.0  # -softmax probability of the target's class (--set_cost_class)
    cost_kpts: float = 4.0  # L1 of absolute joints, visible ones (--set_cost_kpts; code default 5)
    cost_ctrs: float = 0.5  # Euclidean distance of the centres (--set_cost_ctrs; code default 1)
    cost_deltas: float = 0.5  # L1 of the remapped offsets, visible joints (--set_cost_deltas; code default 1)
    cost_vis: float = 0.2  # Euclidean distance of the K visibility scores (--set_cost_kpts_class; code default 2)
    # ---- loss weights ----
    loss_ce: float = 1.0  # cross-entropy over every query (fixed at 1 in the code)
    loss_kpts: float = 4.0  # L1 of absolute joints (--kpts_loss_coef; code default 5; paper lambda_L1 = 4)
    loss_ctrs: float = 0.5  # squared error of the centre (--ctrs_loss_coef; code default 1; paper lambda_ctr)
    loss_deltas: float = 0.5  # L1 of the remapped offsets (--deltas_loss_coef; code default 1; not in the paper)
    loss_vis: float = 0.2  # squared error of the visibilities (--kpts_class_loss_coef; code 2; paper lambda_L2)
    eos_coef: float = 0.1  # cross-entropy weight of the no-object class
    aux_loss: bool = True  # the same losses on every earlier decoder layer, each re-matched
