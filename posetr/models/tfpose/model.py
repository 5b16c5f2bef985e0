"""TFPose (Mao et al., "TFPose: Direct Human Pose Estimation with Transformers", 2021): a top-down
regressor. Person crop -> ResNet levels -> 1x1 projections + level and sine pixel embeddings -> NE
deformable encoder layers (p2p) -> memory -> ND keypoint-query decoder layers -> K (x, y) per layer;
in training also the auxiliary heatmap of the C5 memory tokens.

Unstated details [Deformable DETR, ``deformable_transformer.py`` / ``deformable_detr.py``]: each
projection is Conv2d 1x1 (Xavier, bias 0) + GroupNorm(32); the sine embedding is normalised with the
-0.5 offset and 2 pi scale; the level embedding is N(0, 1); every weight matrix of the encoder and
decoder layers starts Xavier-uniform, then each deformable attention gets its own initialisation.
With NE = 0 the memory is F0 + E (projected features plus both embeddings), Poseur's zero-layer
encoder (``DetrTransformerEncoder_zero_layer``), the code TFPose's NE = 0 ablations became.
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.common.backbone import build_resnet
from posetr.models.common.deformable_decoder import DeformableDecoderLayer
from posetr.models.common.deformable_encoder import DeformableEncoder, DeformableEncoderLayer, flatten_levels
from posetr.models.common.kernels import get_kernels
from posetr.models.common.position_encoding import LevelEmbedding, level_masks_and_embeddings, sine_position_encoding
from posetr.models.tfpose.config import LEVEL_SETS
from posetr.models.tfpose.decoder import KeypointDecoder
from posetr.models.tfpose.heatmap import DeconvHeatmapHead
from posetr.ops import MSDeformAttn


class TFPose(nn.Module):
    """TFPose on person crops.

    Forward:
        images Float[B, 3, H, W] (normalised RGB crops), masks Bool[B, H, W] (True at padding; all False
        for crops) -> dict:

        - ``pred_keypoints`` Float[B, K, 2]: the last decoder layer's keypoints, (x, y) normalised to the
          crop, in (0, 1).
        - ``layer_keypoints`` Float[ND, B, K, 2]: every decoder layer's keypoints (the last is
          ``pred_keypoints``).
        - ``input_size`` (H, W): the crop size in pixels (the flip test's pixel convention needs W).
        - training with the auxiliary branch: ``pred_heatmap`` Float[B, K, H/4, W/4] (from the C5 tokens of
          the memory, stride 32 upsampled x8).
    """

    def __init__(self, *, backbone, encoder, decoder, heatmap_head, position_encoding, d_model: int):
        super().__init__()
        self.backbone = backbone
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d_model, 1), nn.GroupNorm(32, d_model)) for c in backbone.num_channels
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        self.position_encoding = position_encoding
        self.level_embed = LevelEmbedding(num_levels=len(backbone.num_channels), d_model=d_model)
        self.encoder = encoder
        self.decoder = decoder
        self.heatmap_head = heatmap_head
        for layer in [*encoder.layers, *decoder.layers]:  # Deformable DETR's transformer _reset_parameters
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            for m in layer.modules():
                if isinstance(m, MSDeformAttn):
                    m._reset_parameters()

    def encode(self, images: torch.Tensor, masks: torch.Tensor):
        """The memory M and its token bookkeeping.

        Returns:
            memory Float[B, n, C] (n = sum of H_l * W_l over the levels, coarsest last),
            spatial_shapes Long[L, 2] ((H_l, W_l)), level_start_index Long[L], valid_ratios Float[B, L, 2],
            padding_mask Bool[B, n].
        """
        srcs = [proj(f) for proj, f in zip(self.input_proj, self.backbone(images))]
        level_masks, pos_maps = level_masks_and_embeddings(srcs, masks, position_encoding=self.position_encoding,
                                                           level_embed=self.level_embed)
        src, mask, pos, shapes, starts, ratios = flatten_levels(srcs, level_masks, pos_maps)
        memory = self.encoder(src, pos, shapes, starts, ratios, mask) if len(self.encoder.layers) else src + pos
        return memory, shapes, starts, ratios, mask

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> dict:
        memory, shapes, starts, ratios, mask = self.encode(images, masks)
        layer_keypoints = self.decoder(memory, shapes, starts, ratios, mask)
        out = {"pred_keypoints": layer_keypoints[-1], "layer_keypoints": layer_keypoints,
               "input_size": tuple(images.shape[-2:])}
        if self.training and self.heatmap_head is not None:
            h5, w5 = shapes[-1].tolist()
            c5 = memory[:, starts[-1]:].transpose(1, 2).reshape(memory.shape[0], -1, h5, w5)  # M_C5
            out["pred_heatmap"] = self.heatmap_head(c5)
        return out


def build_tfpose(cfg) -> TFPose:
    """TFPose from ``cfg`` (TFPoseConfig), every deformable attention on ``get_kernels(cfg.ops)``."""
    attn_fn = get_kernels(cfg.ops).ms_deform_attn
    n_levels = len(LEVEL_SETS[cfg.levels])
    # built in this order (the order of the random initialisation)
    backbone = build_resnet(depth=cfg.backbone_depth, width=cfg.backbone_width, norm=cfg.backbone_norm,
                            pretrained=cfg.pretrained_backbone, out_indices=LEVEL_SETS[cfg.levels],
                            train_stem=True)
    encoder_layer = DeformableEncoderLayer(
        d_model=cfg.d_model, n_levels=n_levels, n_heads=cfg.n_heads, n_points=cfg.n_points,
        dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, attn_fn=attn_fn,
    )
    decoder_layer = DeformableDecoderLayer(
        d_model=cfg.d_model, n_levels=n_levels, n_heads=cfg.n_heads, n_points=cfg.n_points,
        dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, attn_fn=attn_fn, self_attention=cfg.q2q,
    )
    decoder = KeypointDecoder(layer=decoder_layer, num_layers=cfg.dec_layers, d_model=cfg.d_model,
                              num_keypoints=cfg.num_keypoints, coord_head_layers=cfg.coord_head_layers,
                              detach_reference=cfg.detach_reference)
    heatmap_head = None
    if cfg.aux_heatmap:
        heatmap_head = DeconvHeatmapHead(in_channels=cfg.d_model, channels=cfg.heatmap_channels,
                                         num_keypoints=cfg.num_keypoints)
    return TFPose(
        backbone=backbone,
        encoder=DeformableEncoder(layer=encoder_layer, num_layers=cfg.enc_layers),
        decoder=decoder,
        heatmap_head=heatmap_head,
        position_encoding=sine_position_encoding(d_model=cfg.d_model, offset=-0.5),
        d_model=cfg.d_model,
    )
