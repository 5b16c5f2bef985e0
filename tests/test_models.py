"""PETR model parts: shapes, torchvision-compatible backbone names, heatmap targets, postprocess format."""
import math

import pytest
import torch

from posetr.models.common.backbone import FrozenBatchNorm2d, ResNet, load_torchvision_state_dict
from posetr.models.petr import PETRConfig
from posetr.models.petr.pose_attention import PoseDeformableAttention
from posetr.ops import MSDeformAttn
from posetr.models.common.deformable_encoder import encoder_reference_points, flatten_levels
from posetr.models.petr.heatmap import gaussian_radius, heatmap_focal_loss, render_heatmaps
from posetr.models.common.position_encoding import PositionEmbeddingSine
from posetr.models.petr.postprocess import PostProcess
from posetr.models.petr.proposals import proposal_centres
from posetr.ops.reference import ms_deform_attn_pytorch


def torchvision_resnet_keys(depth):
    """The parameter/buffer names of torchvision.models.resnet{depth}() (fc included), hard-coded by layout."""
    bottleneck, blocks = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3))}[depth]
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight"] + [f"bn1.{b}" for b in bn]
    for i, n in enumerate(blocks):
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            for c in range(1, 4 if bottleneck else 3):
                keys.append(f"{p}.conv{c}.weight")
                keys += [f"{p}.bn{c}.{b}" for b in bn]
            if j == 0 and (bottleneck or i > 0):
                keys.append(f"{p}.downsample.0.weight")
                keys += [f"{p}.downsample.1.{b}" for b in bn]
    return keys + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_backbone_names_match_torchvision(depth):
    model = ResNet(depth=depth, norm="frozen_bn")
    ours = set(model.state_dict())
    expected = {k for k in torchvision_resnet_keys(depth) if not k.startswith("fc.") and "num_batches" not in k}
    assert ours == expected


def test_backbone_loads_torchvision_state_dict(tmp_path):
    model = ResNet(depth=50)
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    assert tuple(state["layer4.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    assert tuple(state["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    torchvision_like = dict(state)
    torchvision_like["fc.weight"] = torch.randn(1000, 2048)
    torchvision_like["fc.bias"] = torch.randn(1000)
    for k in list(state):
        if k.endswith("running_var"):
            torchvision_like[k[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(7)
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision_like, path)
    fresh = ResNet(depth=50)
    load_torchvision_state_dict(fresh, str(path))
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, state[k])
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="does not fit"):
        load_torchvision_state_dict(ResNet(depth=50), str(tmp_path / "bad.pth"))


@pytest.mark.parametrize("depth,width,channels", [(50, 64, [512, 1024, 2048]), (18, 16, [32, 64, 128])])
def test_backbone_shapes(depth, width, channels):
    model = ResNet(depth=depth, width=width, norm="group")
    assert model.num_channels == channels
    feats = model(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 96 // s) for c, s in zip(channels, (8, 16, 32))]
    with pytest.raises(ValueError, match="backbone_depth"):
        ResNet(depth=101)
    with pytest.raises(ValueError, match="backbone_norm"):
        ResNet(depth=18, norm="layer")


@pytest.mark.parametrize("out_indices", [(4,), (1, 2, 3, 4), (2, 3)])
def test_backbone_out_indices(out_indices):
    """Stages 1..4 are C2..C5 (strides 4..32); a subset returns just those maps, C2 with ceil sizes."""
    model = ResNet(depth=18, width=8, norm="group", out_indices=out_indices)
    feats = model(torch.randn(1, 3, 70, 97))
    strides = [2 ** (i + 1) for i in out_indices]
    assert model.strides == strides and model.num_channels == [8 * 2 ** (i - 1) for i in out_indices]
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, -(-70 // s), -(-97 // s)) for c, s in zip(model.num_channels, strides)]
    for bad in [(), (0, 1), (3, 2), (2, 2), (5,)]:
        with pytest.raises(ValueError, match="out_indices"):
            ResNet(depth=18, out_indices=bad)


@pytest.mark.parametrize("depth", [18, 50])
def test_backbone_dc5_dilates_layer4(depth):
    """DC5 (torchvision ``replace_stride_with_dilation=[False, False, True]``): layer4 keeps stride 16,
    its first block keeps dilation 1 and the others use dilation 2; the parameters are those of ResNet."""
    plain = ResNet(depth=depth, width=8, norm="group", out_indices=(4,))
    dc5 = ResNet(depth=depth, width=8, norm="group", out_indices=(4,), dilate_last=True)
    assert [n for n, _ in dc5.named_parameters()] == [n for n, _ in plain.named_parameters()]
    assert sum(p.numel() for p in dc5.parameters()) == sum(p.numel() for p in plain.parameters())
    assert dc5.strides == [16]
    assert tuple(dc5(torch.randn(1, 3, 64, 96))[0].shape[-2:]) == (4, 6)
    convs = [m for n, m in dc5.layer4.named_modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert all(c.stride == (1, 1) for c in convs)
    per_block = len(convs) // len(dc5.layer4)
    assert [c.dilation[0] for c in convs] == [1] * per_block + [2] * (len(convs) - per_block)


def test_frozen_batchnorm_equals_batchnorm_eval():
    bn = torch.nn.BatchNorm2d(8).eval()
    for name in ("weight", "bias", "running_mean"):
        getattr(bn, name).data.uniform_(-1, 1)
    bn.running_var.data.uniform_(0.5, 2)
    frozen = FrozenBatchNorm2d(8)
    frozen.load_state_dict(bn.state_dict())
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(frozen(x), bn(x))
    assert not list(frozen.parameters())


def test_position_encoding_shape_and_range():
    mask = torch.zeros(2, 6, 9, dtype=torch.bool)
    mask[1, :, 5:] = True
    pos = PositionEmbeddingSine(num_feats=16)(mask)
    assert pos.shape == (2, 32, 6, 9)
    assert pos.abs().max() <= 1
    # The unpadded part of image 1 is embedded like a full 6x5 image.
    full = PositionEmbeddingSine(num_feats=16)(torch.zeros(1, 6, 5, dtype=torch.bool))
    torch.testing.assert_close(pos[1, :, :, :5], full[0])


def test_flatten_levels_and_reference_points():
    feats = [torch.randn(2, 4, 6, 8), torch.randn(2, 4, 3, 4)]
    masks = [torch.zeros(2, 6, 8, dtype=torch.bool), torch.zeros(2, 3, 4, dtype=torch.bool)]
    masks[0][1, :, 4:] = True
    masks[1][1, :, 2:] = True
    src, mask, pos, shapes, starts, ratios = flatten_levels(feats, masks, feats)
    assert src.shape == (2, 60, 4) and mask.shape == (2, 60) and shapes.tolist() == [[6, 8], [3, 4]]
    assert starts.tolist() == [0, 48]
    torch.testing.assert_close(ratios[1], torch.tensor([[0.5, 1.0], [0.5, 1.0]]))
    ref = encoder_reference_points(shapes, ratios)
    assert ref.shape == (2, 60, 2, 4 // 2)
    assert ref.min() > 0 and ref.max() < 1
    # First pixel of level 0 in image 0: centre (0.5/8, 0.5/6).
    torch.testing.assert_close(ref[0, 0, 0], torch.tensor([0.5 / 8, 0.5 / 6]))


def test_proposal_centres_invalidate_padding_and_borders():
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, 15:] = True
    logits, valid = proposal_centres(mask, torch.tensor([[4, 5]]))
    assert logits.shape == (1, 20, 2)
    assert not valid[0, 15:].any() and valid[0, :15].all()
    assert torch.isinf(logits[0, 15:]).all()


def _attention_inputs(n_levels, Lq=5, C=16):
    shapes = torch.tensor([[6, 7], [3, 4]][:n_levels])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    S = int(shapes.prod(1).sum())
    return torch.randn(2, Lq, C), torch.randn(2, S, C), shapes, starts


def test_deformable_attention_shapes():
    query, value, shapes, starts = _attention_inputs(2)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3, attn_fn=ms_deform_attn_pytorch)
    out = attn(query, torch.rand(2, 5, 2, 2), value, shapes, starts, torch.zeros(2, value.shape[1], dtype=torch.bool))
    assert out.shape == (2, 5, 16)


def test_pose_attention_samples_at_keypoints_initially():
    """Offsets start at zero: each head samples exactly at the K keypoints, so a constant value map
    returns the output projection of that constant."""
    query, value, shapes, starts = _attention_inputs(2)
    K = 17
    attn = PoseDeformableAttention(d_model=16, n_levels=2, n_heads=4, n_points=K, attn_fn=ms_deform_attn_pytorch)
    assert attn.sampling_offsets.bias.abs().max() == 0
    value = torch.ones_like(value)
    ref = torch.rand(2, 5, 1, K, 2).expand(2, 5, 2, K, 2) * 0.6 + 0.2
    out = attn(query, ref, value, shapes, starts)
    expected = attn.output_proj(attn.value_proj(torch.ones(16)))
    torch.testing.assert_close(out, expected.expand(2, 5, 16), atol=1e-5, rtol=1e-5)


def test_gaussian_radius_and_heatmap_targets():
    assert gaussian_radius(10.0, 10.0) == pytest.approx(0.97367, abs=1e-4)  # CenterNet formula (roots over 2)
    kpts = torch.zeros(1, 17, 3)
    kpts[0, 0] = torch.tensor([0.5, 0.5, 2.0])
    kpts[0, 1] = torch.tensor([0.25, 0.25, 0.0])  # not labelled: no peak
    target = {"keypoints": kpts, "boxes": torch.tensor([[0.5, 0.5, 1.0, 1.0]]), "size": torch.tensor([256, 256])}
    heat = render_heatmaps([target], (1, 17, 32, 32))
    assert heat[0, 0, 16, 16] == 1 and heat[0, 0].sum() > 1
    assert heat[0, 1:].sum() == 0
    logits = torch.full((1, 17, 32, 32), -5.0)
    good = heat.clamp(1e-4, 1 - 1e-4).logit()
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    assert heatmap_focal_loss(good, heat, mask) < heatmap_focal_loss(logits, heat, mask)


def test_postprocess_format():
    B, Q, K = 2, 120, 17
    outputs = {"pred_logits": torch.randn(B, Q, 1), "pred_keypoints": torch.rand(B, Q, K, 2),
               "pred_keypoints_refined": torch.rand(B, Q, K, 2)}
    results = PostProcess(num_detections=100)(outputs, torch.tensor([[480, 640], [100, 200]]))
    assert len(results) == B
    for b, r in enumerate(results):
        assert r["scores"].shape == (100,) and r["keypoints"].shape == (100, K, 3)
        assert (r["scores"][:-1] >= r["scores"][1:]).all()
        top = outputs["pred_logits"][b, :, 0].sigmoid().topk(1).indices[0]
        w, h = (640, 480) if b == 0 else (200, 100)
        expected = outputs["pred_keypoints_refined"][b, top] * torch.tensor([w, h])
        torch.testing.assert_close(r["keypoints"][0, :, :2], expected)
    few = PostProcess(num_detections=100)({k: v[:, :7] for k, v in outputs.items()}, torch.tensor([[1, 1], [1, 1]]))
    assert few[0]["scores"].shape == (7,)


def test_config_defaults_are_petr_r50():
    cfg = PETRConfig()
    assert (cfg.backbone_depth, cfg.d_model, cfg.enc_layers, cfg.dec_layers, cfg.joint_dec_layers) == (50, 256, 6, 3, 2)
    assert (cfg.num_queries, cfg.n_heads, cfg.enc_points, cfg.dim_feedforward) == (300, 8, 4, 1024)
    assert (cfg.cost_class, cfg.cost_kpt, cfg.cost_oks) == (2.0, 70.0, 7.0)
    assert (cfg.loss_hm, cfg.loss_joint_kpt, cfg.loss_joint_oks, cfg.loss_enc_kpt) == (4.0, 80.0, 3.0, 70.0)
    assert math.isclose(cfg.dropout, 0.1)
