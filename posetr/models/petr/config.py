"""PETR's model configuration (``model.name: petr``): one dataclass, every field defaulted and commented.

The defaults are opera's PETR-R50 COCO recipe (Shi et al., "End-to-End Multi-Person Pose Estimation
with Transformers", CVPR 2022; hikvision-research/opera ``configs/petr/petr_r50_16x2_100e_coco.py``).

A SMALL configuration that memorises a few images on a 2-core CPU within minutes (the acceptance run of
``configs/petr_overfit_coco_sample.yaml``) -- recommended, from a from-scratch memorisation run::

    model:
      backbone_depth: 18        # BasicBlock ResNet-18 layout
      backbone_width: 32        # half the channels of ResNet-18 (C3..C5 = 128, 256, 512)
      backbone_norm: group      # from scratch: GroupNorm trains; FrozenBatchNorm would freeze identity stats
      d_model: 128
      n_heads: 4
      dim_feedforward: 256
      dropout: 0.0              # memorisation: no dropout
      enc_layers: 2
      dec_layers: 2
      joint_dec_layers: 1
      num_queries: 30
      kpt_branch_hidden: 128
    (images resized so the longer side is about 512 pixels; AdamW lr 2e-4 .. 5e-4, no backbone lr scaling)
"""
from __future__ import annotations

from dataclasses import dataclass

from posetr.models.common.config import BaseModelConfig


@dataclass
class PETRConfig(BaseModelConfig):
    # name, ops, dataset, num_keypoints: see BaseModelConfig
    name: str = "petr"
    # ---- backbone ----
    backbone_depth: int = 50  # ResNet depth: 18 | 34 (BasicBlock) or 50 (Bottleneck)
    backbone_width: int = 64  # channels of the stem; 64 is torchvision's ResNet (narrower: a tiny model from scratch)
    backbone_norm: str = "frozen_bn"  # "frozen_bn" (DETR, for pretrained weights) | "batch" | "group" (from scratch)
    backbone_init: str = "imagenet"  # "imagenet" (official): training needs pretrained_backbone; "scratch": random
    pretrained_backbone: str | None = None  # torchvision / mmdet / mmpose ResNet weights (.pth); never downloaded
    # ---- transformer ----
    d_model: int = 256  # hidden size of encoder, decoders and heads
    n_heads: int = 8  # attention heads (deformable and self-attention)
    num_feature_levels: int = 4  # C3, C4, C5 + one extra stride-64 level
    enc_points: int = 4  # sampling points per head and level in the encoder and the joint decoder
    dim_feedforward: int = 1024  # FFN hidden size of every transformer layer
    dropout: float = 0.1  # dropout in every transformer layer
    enc_layers: int = 6  # deformable encoder layers
    dec_layers: int = 3  # pose decoder layers (pose-deformable attention, P = num_keypoints points per level)
    joint_dec_layers: int = 2  # joint decoder layers (num_keypoints joint queries per person)
    num_queries: int = 300  # pose queries = top-k encoder proposals that seed the pose decoder
    kpt_branch_hidden: int = 512  # hidden size of the pose keypoint regression MLP (opera: 512)
    num_kpt_fcs: int = 2  # hidden Linear+ReLU blocks after the first one in the keypoint MLPs (opera: 2)
    heatmap: bool = True  # auxiliary stride-8 keypoint heatmap branch (training only)
    heatmap_pos_embed: bool = False  # add the sine + level embedding to the heatmap encoder's queries; opera
    #   passes it as ``query_pose=`` (a typo mmcv ignores), so the official branch gets none (false)
    transformer_init: str = "xavier"  # "xavier": opera's PETRTransformer.init_weights (Xavier-uniform on every
    #   transformer matrix, deformable attentions re-initialised); "pytorch": PyTorch's layer defaults
    # ---- matcher (cost = class * focal + kpt * L1 + oks * (-OKS)) ----
    cost_class: float = 2.0  # focal classification cost weight
    cost_kpt: float = 70.0  # normalised keypoint L1 cost weight (visible joints)
    cost_oks: float = 7.0  # -OKS cost weight
    # ---- loss weights ----
    loss_cls: float = 2.0  # sigmoid focal classification (pose decoder and encoder proposals)
    loss_kpt: float = 70.0  # keypoint L1 (pose decoder layers)
    loss_oks: float = 2.0  # -log(OKS) (pose decoder layers)
    loss_enc_kpt: float = 70.0  # keypoint L1 of the encoder proposals
    loss_hm: float = 4.0  # CornerNet focal loss of the auxiliary heatmap
    loss_joint_kpt: float = 80.0  # keypoint L1 of the joint decoder layers
    loss_joint_oks: float = 3.0  # -log(OKS) of the joint decoder layers
    aux_loss: bool = True  # losses on every decoder layer, not only the last
    focal_alpha: float = 0.25  # focal loss alpha (loss and cost)
    focal_gamma: float = 2.0  # focal loss gamma (loss and cost)
    # ---- inference ----
    num_detections: int = 100  # people returned per image by the postprocessor (top scores, no NMS)
