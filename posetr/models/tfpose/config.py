"""TFPose's model configuration (``model.name: tfpose``): one dataclass, every field defaulted and commented.

TFPose (Mao et al., "TFPose: Direct Human Pose Estimation with Transformers", arXiv 2103.15320) never had
its code released; the paper (../shared/papers/003_67bd44fafbb703f2.txt) and the spec sheet
(../shared/specs/tfpose.md) are the sources. Tags below: [P] stated in the paper, [DD] Deformable DETR's
value (the paper: "the same hyper-parameters" as Deformable DETR's attention module), [Poseur] the
convention of TFPose's released successor Poseur (aim-uofa/Poseur, ../shared/specs/poseur.md), [D] a
reading of ours where both are silent. The defaults are the main model: ResNet-50, NE = 6, ND = 6,
c = 256, 256 x 192 crops (Table 5: 71.0 AP, 9.2 GFLOPs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from posetr.models.common.config import BaseModelConfig

LEVEL_SETS = {"C2-C5": (1, 2, 3, 4), "C3-C5": (2, 3, 4)}  # value of ``levels`` -> ResNet out_indices


@dataclass
class TFPoseConfig(BaseModelConfig):
    WEIGHT_FREE_FIELDS: ClassVar[tuple[str, ...]] = BaseModelConfig.WEIGHT_FREE_FIELDS + (
        "loss_kpt", "loss_heatmap", "heatmap_sigma", "flip_convention", "instance_score")
    # name, ops, dataset, num_keypoints: see BaseModelConfig
    name: str = "tfpose"
    # ---- backbone [P: ResNet-18 for the ablations, ResNet-50 for the main results, ImageNet init] ----
    backbone_depth: int = 50  # ResNet depth: 18 | 34 (BasicBlock) or 50 (Bottleneck)
    backbone_width: int = 64  # channels of the stem; 64 is torchvision's ResNet (narrower: a tiny model from scratch)
    # [D] not stated; mmpose's top-down practice (Poseur, SimpleBaseline) trains BN and every stage:
    # "batch" | "group" (from scratch, tiny batches) | "frozen_bn" (DETR)
    backbone_norm: str = "batch"
    backbone_init: str = "imagenet"  # "imagenet" (official): training needs pretrained_backbone; "scratch": random
    pretrained_backbone: str | None = None  # torchvision / mmdet / mmpose ResNet weights (.pth); never downloaded
    # Feature levels [P: "C2, C3, C4 and C5"]: "C2-C5" (strides 4-32, n = 4080 tokens at 256x192) or "C3-C5"
    # (strides 8-32, n = 1008). [D] the paper's GFLOPs fit C3-C5 for every model with an encoder (9.27 G
    # estimated vs 9.2 for R-50 NE6; C2 would cost ~3.1 GMAC per encoder layer) and C2-C5 for the NE = 0
    # ablations (3.59 vs 3.61): the default is C3-C5, configs/tfpose_r18_ablation.yaml uses C2-C5.
    levels: str = "C3-C5"
    # ---- transformer [P: c = 256, Table 2 also 128; DD: 8 heads, 4 points, FFN 1024, dropout 0.1] ----
    d_model: int = 256  # c: channels of the 1x1 projections, encoder, decoder and heads
    n_heads: int = 8  # heads of the deformable attention and of the q2q self-attention
    n_points: int = 4  # sampling points per head and level (p2p and p2q)
    dim_feedforward: int = 1024  # FFN hidden size of every encoder and decoder layer
    dropout: float = 0.1  # dropout in every encoder and decoder layer
    enc_layers: int = 6  # NE: deformable encoder layers [P: 6; Table 5 also 4; Tables 1-2 use 0]
    dec_layers: int = 6  # ND: decoder layers, each predicting all K keypoints [P: 6; Table 3: 1-6]
    q2q: bool = True  # query-to-query self-attention in every decoder layer [P: Table 1 ablates it]
    # Reference of layer d's p2q attention and refinement = the prediction of layer d - 1, detached from the
    # gradient [DD: iterative refinement detaches; the paper is silent; Poseur does not detach]
    detach_reference: bool = True
    coord_head_layers: int = 3  # Linear layers of each layer's coordinate MLP (c-c-2) [DD: 3, unshared per layer]
    # ---- auxiliary heatmap (training only) [P: C5 tokens of the memory, 3 deconvolutions to stride 4, MSE
    # against UDP Gaussians, lambda = 50; D: SimpleBaseline's deconv head: 4x4 kernels, BN, ReLU, 1x1 conv] ----
    aux_heatmap: bool = True  # build the branch and its loss [P: Table 4 ablates it]
    heatmap_channels: int = 256  # channels of each deconvolution (SimpleBaseline: 256)
    # Gaussian sigma in heatmap pixels [D: mmpose's UDP configs: 2 at 64x48 (256x192 input), 3 at 96x72]
    heatmap_sigma: float = 2.0
    # ---- loss weights (Eq. 7: L = L_reg + lambda * L_aux) ----
    loss_kpt: float = 1.0  # L1 of every decoder layer (each layer the same weight [P: Eq. 5])
    loss_heatmap: float = 50.0  # lambda [P]
    # ---- inference ----
    # Un-flip rule of the flip test (fused by averaging [D]): "pixel": x -> (W - 1) / W - x, exact for the
    # engine's flip test (crop pixel i sits at normalised x = i / W and ``images.flip(-1)`` maps i -> W - 1 - i;
    # tests/test_models_tfpose.py::test_pixel_unflip_is_exact_for_the_engines_flip_test); "unit": x -> 1 - x
    # (mmpose's ``fliplr_regression(center_x=0.5)`` and Poseur; 1 / W off, so the fused x is biased by half a
    # crop pixel). The training flip, which mirrors the image before the crop, maps x -> 1 - x in the crop:
    # it is an augmentation and sets no convention for the test.
    flip_convention: str = "pixel"
    # Instance score [D: TFPose predicts no confidence]: "box": the person box's score (``bbox_score``; the
    # SimpleBaseline rescoring box_score * mean keypoint score with every keypoint score 1) | "one": 1
    instance_score: str = "box"
