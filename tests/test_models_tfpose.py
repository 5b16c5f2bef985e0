"""TFPose on CPU: the spec's token bookkeeping and shapes, the NE / level / ablation variants, posetr vs
reference kernels, the losses (L1 per layer, UDP heatmap MSE), the postprocessor's flip fusion and pixel
mapping, parameter counts, FLOPs beside the paper's, and a short overfit on synthetic crops."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from posetr.data.keypoints import keypoint_info
from posetr.models import build_model
from posetr.models.tfpose import TFPoseConfig
from posetr.models.tfpose.flops import PAPER_MODELS, model_gmacs
from posetr.models.tfpose.heatmap import heatmap_mse_loss, render_udp_heatmaps
from posetr.models.common.top_down import unflip_keypoints
from kernel_agreement import assert_twins_agree_in_float64, weighted_total


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def tiny_config(**overrides):
    cfg = TFPoseConfig(backbone_depth=18, backbone_width=8, backbone_norm="group", d_model=32, n_heads=4,
                       dim_feedforward=64, dropout=0.0, enc_layers=1, dec_layers=3, heatmap_channels=8)
    return dataclasses.replace(cfg, **overrides)


def make_crops(B=2, H=64, W=48, seed=0):
    """Crops with a blob at each keypoint of a shifted, scaled template pose, and their targets."""
    g = torch.Generator().manual_seed(seed)
    template = torch.rand(17, 2, generator=g) - 0.5
    shift = (torch.rand(B, 1, 2, generator=g) - 0.5) * 0.4
    size = 0.4 + 0.4 * torch.rand(B, 1, 1, generator=g)
    xy = 0.5 + shift + template * size
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    images = 0.1 * torch.randn(B, 3, H, W, generator=g)
    for b in range(B):
        for k in range(17):
            blob = torch.exp(-((xs - xy[b, k, 0] * W) ** 2 + (ys - xy[b, k, 1] * H) ** 2) / 8)
            images[b, k % 3] += blob * (1 + k / 17)
    weight = torch.ones(B, 17)
    weight[0, :3] = 0  # unlabelled joints
    targets = [{"keypoints": torch.cat([xy[b], 2 * weight[b, :, None]], -1), "target_weight": weight[b],
                "center": torch.tensor([100.0 + 10 * b, 120.0]), "scale": torch.tensor([150.0, 200.0]),
                "rotation": 0.0, "bbox_score": 0.8 - 0.1 * b, "image_id": b, "area": 1000.0,
                "orig_size": torch.tensor([480, 640])} for b in range(B)]
    return images, torch.zeros(B, H, W, dtype=torch.bool), targets


# ---- token bookkeeping and shapes (spec, last section) ----

@pytest.mark.parametrize("levels,size,shapes,starts", [
    ("C2-C5", (256, 192), [[64, 48], [32, 24], [16, 12], [8, 6]], [0, 3072, 3840, 4032]),
    ("C3-C5", (256, 192), [[32, 24], [16, 12], [8, 6]], [0, 768, 960]),
    ("C2-C5", (384, 288), [[96, 72], [48, 36], [24, 18], [12, 9]], [0, 6912, 8640, 9072]),
    ("C3-C5", (384, 288), [[48, 36], [24, 18], [12, 9]], [0, 1728, 2160]),
])
def test_token_bookkeeping(levels, size, shapes, starts):
    n = {((256, 192), "C2-C5"): 4080, ((256, 192), "C3-C5"): 1008,
         ((384, 288), "C2-C5"): 9180, ((384, 288), "C3-C5"): 2268}[size, levels]
    torch.manual_seed(0)
    model = build_model(tiny_config(levels=levels, enc_layers=0))[0]
    images, masks = torch.randn(1, 3, *size), torch.zeros(1, *size, dtype=torch.bool)
    with torch.no_grad():
        memory, spatial_shapes, level_start_index, _, _ = model.encode(images, masks)
    assert spatial_shapes.tolist() == shapes and level_start_index.tolist() == starts
    assert memory.shape == (1, n, 32)


@pytest.mark.parametrize("size", [(256, 192), (384, 288)])
def test_shapes_and_heatmap_only_in_training(size):
    torch.manual_seed(0)
    model = build_model(tiny_config(dec_layers=2))[0]
    images, masks = torch.randn(2, 3, *size), torch.zeros(2, *size, dtype=torch.bool)
    out = model.train()(images, masks)
    assert out["layer_keypoints"].shape == (2, 2, 17, 2) and out["pred_keypoints"].shape == (2, 17, 2)
    assert torch.equal(out["pred_keypoints"], out["layer_keypoints"][-1])
    assert out["pred_heatmap"].shape == (2, 17, size[0] // 4, size[1] // 4)
    assert out["input_size"] == size
    with torch.no_grad():
        out = model.eval()(images, masks)
    assert "pred_heatmap" not in out
    assert ((out["layer_keypoints"] > 0) & (out["layer_keypoints"] < 1)).all()


def test_refinement_starts_at_the_learned_initial_keypoints():
    """The coordinate MLPs' last layers start at zero (Delta = 0), so every layer predicts y_0 at first."""
    torch.manual_seed(0)
    model = build_model(tiny_config())[0].eval()
    images, masks, _ = make_crops()
    with torch.no_grad():
        out = model(images, masks)
    y0 = model.decoder.initial_logits.sigmoid()
    torch.testing.assert_close(out["layer_keypoints"], y0.expand_as(out["layer_keypoints"]))


@pytest.mark.parametrize("enc_layers,levels", [(0, "C2-C5"), (4, "C3-C5"), (6, "C3-C5"), (6, "C2-C5")])
def test_variants_build_and_train(enc_layers, levels):
    torch.manual_seed(0)
    model, criterion, _ = build_model(tiny_config(enc_layers=enc_layers, levels=levels))
    assert len(model.encoder.layers) == enc_layers
    images, masks, targets = make_crops()
    losses = criterion(model(images, masks), targets)
    assert set(losses) == {"loss_kpt_0", "loss_kpt_1", "loss_kpt", "loss_heatmap"}
    weighted_total(criterion, losses).backward()
    assert model.decoder.initial_logits.grad is not None and model.backbone.conv1.weight.grad is not None


def test_ablation_switches():
    torch.manual_seed(0)
    base = build_model(tiny_config(dec_layers=2))[0]
    no_q2q = build_model(tiny_config(dec_layers=2, q2q=False))[0]
    assert all(layer.self_attn is None for layer in no_q2q.decoder.layers)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(base) - count(no_q2q) == 2 * (4 * 32 * 32 + 4 * 32 + 2 * 32)  # MHA + its LayerNorm per layer
    model, criterion, _ = build_model(tiny_config(aux_heatmap=False, dec_layers=1))
    assert model.heatmap_head is None and "loss_heatmap" not in criterion.weight_dict
    images, masks, targets = make_crops()
    assert set(criterion(model(images, masks), targets)) == {"loss_kpt"}


def test_detach_reference_stops_the_gradient_between_layers():
    images, masks, targets = make_crops()
    for detach in (True, False):
        torch.manual_seed(0)
        model, criterion, _ = build_model(tiny_config(dec_layers=2, detach_reference=detach, aux_heatmap=False))
        with torch.no_grad():  # a non-zero first refinement, so its gradient through layer 2's reference shows
            model.decoder.coord_heads[0][-1].weight.normal_(std=0.1)
        criterion(model(images, masks), targets)["loss_kpt"].backward()  # last layer only
        grad = model.decoder.coord_heads[0][-1].bias.grad
        assert (grad is None or not grad.any()) == detach


def test_invalid_config_is_a_clear_error():
    for field, value, match in [("levels", "C4-C5", "model.levels"), ("flip_convention", "x", "flip_convention"),
                                ("instance_score", "max", "instance_score"), ("dec_layers", 0, "dec_layers"),
                                ("d_model", 48, "multiple of 32"), ("coord_head_layers", 1, "coord_head_layers")]:
        with pytest.raises(ValueError, match=match):
            build_model(tiny_config(**{field: value}))


# ---- kernels ----

def test_posetr_and_reference_ops_agree_in_float64():
    torch.manual_seed(0)
    model, criterion, _ = build_model(tiny_config(ops="posetr", enc_layers=2))
    ref_model, ref_criterion, _ = build_model(tiny_config(ops="reference", enc_layers=2))
    images, masks, targets = make_crops()
    assert_twins_agree_in_float64(model, criterion, ref_model, ref_criterion, images, masks, targets,
                                  output_keys=("layer_keypoints", "pred_heatmap"))


# ---- losses ----

def test_losses_vanish_on_perfect_predictions_and_mask_unlabelled_joints():
    torch.manual_seed(0)
    _, criterion, _ = build_model(tiny_config(dec_layers=3))
    _, _, targets = make_crops()
    gt = torch.stack([t["keypoints"][:, :2] for t in targets])
    weight = torch.stack([t["target_weight"] for t in targets])
    heatmaps, hm_weight = render_udp_heatmaps(gt, weight, input_size=(64, 48), heatmap_size=(16, 12), sigma=2.0)
    perfect = {"layer_keypoints": gt.expand(3, -1, -1, -1).clone(), "pred_heatmap": heatmaps, "input_size": (64, 48)}
    perfect["layer_keypoints"][:, 0, :3] = 0.9  # unlabelled joints (target_weight 0) do not count
    losses = criterion(perfect, targets)
    assert all(v.item() == 0 for v in losses.values())
    shifted = dict(perfect, layer_keypoints=perfect["layer_keypoints"] + 0.01)
    losses = criterion(shifted, targets)
    labelled = weight.sum().item() * 2
    for d in ("loss_kpt_0", "loss_kpt_1", "loss_kpt"):  # mmpose L1: mean over B * K * 2 coordinates
        assert losses[d].item() == pytest.approx(0.01 * labelled / (2 * 17 * 2), rel=1e-4)
    # every layer weighs the same: the regression loss grows linearly with ND
    assert weighted_total(criterion, losses).item() == pytest.approx(3 * losses["loss_kpt"].item(), rel=1e-5)
    assert criterion.weight_dict["loss_heatmap"] == 50.0


def _udp_target_loop(joint, visible, image_size, heatmap_size, sigma):
    """One joint's UDP Gaussian, written out per pixel from mmpose's ``_udp_generate_target`` description."""
    (W, H), (w, h) = image_size, heatmap_size
    stride = ((W - 1.0) / (w - 1.0), (H - 1.0) / (h - 1.0))
    mu = (joint[0] / stride[0], joint[1] / stride[1])
    centre = (int(mu[0] + 0.5), int(mu[1] + 0.5))
    r = 3 * sigma
    ul, br = (int(centre[0] - r), int(centre[1] - r)), (int(centre[0] + r + 1), int(centre[1] + r + 1))
    target = np.zeros((h, w), np.float32)
    if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
        return target, 0.0
    if visible > 0.5:
        for y in range(max(0, ul[1]), min(br[1], h)):
            for x in range(max(0, ul[0]), min(br[0], w)):
                target[y, x] = math.exp(-((x - mu[0]) ** 2 + (y - mu[1]) ** 2) / (2 * sigma**2))
    return target, float(visible)


def test_udp_targets_match_mmpose_and_peak_at_the_keypoint():
    g = torch.Generator().manual_seed(0)
    keypoints = torch.rand(2, 17, 2, generator=g) * 1.3 - 0.15  # some outside the crop
    keypoints[0, 0] = torch.tensor([0.5, 0.5])
    weight = (torch.rand(2, 17, generator=g) > 0.2).float()
    weight[0, 0] = 1
    for (H, W), sigma in [((256, 192), 2.0), ((384, 288), 3.0)]:
        h, w = H // 4, W // 4
        heatmaps, hm_weight = render_udp_heatmaps(keypoints, weight, input_size=(H, W), heatmap_size=(h, w),
                                                  sigma=sigma)
        assert heatmaps.shape == (2, 17, h, w)
        for b in range(2):
            for k in range(17):
                joint = (keypoints[b, k] * torch.tensor([W, H])).tolist()
                ref, ref_weight = _udp_target_loop(joint, weight[b, k].item(), (W, H), (w, h), sigma)
                np.testing.assert_allclose(heatmaps[b, k].numpy(), ref, atol=1e-5)
                assert hm_weight[b, k].item() == ref_weight
        # a joint at a heatmap grid point q * (W - 1) / (w - 1) peaks there with value 1 (UDP's unbiased stride)
        grid = torch.tensor([[[7 * (W - 1) / (w - 1) / W, 9 * (H - 1) / (h - 1) / H]]])
        peak, _ = render_udp_heatmaps(grid, torch.ones(1, 1), input_size=(H, W), heatmap_size=(h, w), sigma=sigma)
        assert divmod(int(peak.argmax()), w) == (9, 7) and peak.max().item() == pytest.approx(1.0, abs=1e-6)


def test_heatmap_mse_is_mmpose_joints_mse():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 17, 8, 6, generator=g), torch.rand(2, 17, 8, 6, generator=g)
    weight = (torch.rand(2, 17, generator=g) > 0.3).float()
    expected = sum(torch.nn.functional.mse_loss(pred[:, k] * weight[:, k, None, None],
                                                target[:, k] * weight[:, k, None, None]) for k in range(17)) / 17
    torch.testing.assert_close(heatmap_mse_loss(pred, target, weight), expected)


# ---- postprocess ----

def test_postprocess_flip_fusion_and_pixels():
    flip_index = keypoint_info("coco").flip_index()
    g = torch.Generator().manual_seed(0)
    keypoints = torch.rand(2, 17, 2, generator=g)
    _, _, targets = make_crops()
    W = 48
    for convention, shift in (("pixel", (W - 1) / W), ("unit", 1.0)):
        mirrored = keypoints[:, flip_index].clone()  # what a flip-equivariant model predicts on images.flip(-1)
        mirrored[..., 0] = shift - mirrored[..., 0]
        unflipped = unflip_keypoints(mirrored, flip_index, width=W, convention=convention)
        torch.testing.assert_close(unflipped, keypoints)
    cfg = tiny_config()
    _, _, post = build_model(cfg)
    outputs = {"pred_keypoints": keypoints, "input_size": (64, W)}
    flipped = {"pred_keypoints": torch.flip(keypoints, [0])}  # any other prediction: fused by the mean
    results = post(outputs, targets, flipped)
    fused = (keypoints + unflip_keypoints(flipped["pred_keypoints"], flip_index, width=W, convention="pixel")) / 2
    for b, (res, t) in enumerate(zip(results, targets)):
        assert res["keypoints"].shape == (17, 3) and (res["keypoints"][:, 2] == 1).all()
        torch.testing.assert_close(res["keypoints"][:, :2], t["center"] + (fused[b] - 0.5) * t["scale"])
        assert res["score"] == pytest.approx(t["bbox_score"])
    post_one = build_model(dataclasses.replace(cfg, instance_score="one"))[2]
    assert all(r["score"] == 1.0 for r in post_one(outputs, targets))
    torch.testing.assert_close(post_one(outputs, targets)[0]["keypoints"][:, :2],
                               targets[0]["center"] + (keypoints[0] - 0.5) * targets[0]["scale"])


def _wrist_crop(*, rotation=0.0, flip=False, size=(96, 128)):
    """A real test-time crop (posetr's warp) of an image with a dot painted at the left wrist (mirrored first
    with ``flip``, as the training flip does), and the wrist's normalised keypoint (the right wrist when
    flipped)."""
    from crop_dots import paint_dot

    from posetr.data.top_down import instance_target
    from posetr.data.top_down_transforms import AffineCrop, TopDownRandomFlip
    from posetr.data.transforms import Compose

    wrist = np.array([351.3, 207.6])
    kpts = np.zeros((17, 3), np.float32)
    kpts[9] = [*wrist, 2]
    target = instance_target({"image_id": 1, "bbox": [300.0, 100.0, 120.0, 220.0], "bbox_score": 1.0,
                              "keypoints": kpts}, num_keypoints=17, output_size=size, padding=1.25,
                             orig_size=(480, 640), bbox_id=0)
    target["rotation"] = rotation
    pipeline = Compose([TopDownRandomFlip(flip_index=keypoint_info("coco").flip_index(), p=1.0 if flip else 0.0),
                        AffineCrop(output_size=size)])
    crop, out = pipeline(paint_dot((480, 640), *wrist), target)
    return crop, out["keypoints"][10 if flip else 9, :2] / size


@pytest.mark.parametrize("rotation", [0.0, 20.0])
def test_pixel_unflip_is_exact_for_the_engines_flip_test(rotation):
    """The engine's flip test runs the model on ``images.flip(-1)``: crop pixel i shows what pixel W - 1 - i
    of the plain crop shows, so with pixel centres at i / W (posetr/data/crop_geometry.py) a point at x
    appears at (W - 1) / W - x. A dot painted at a keypoint of a real crop is found in the mirrored crop
    where "pixel" un-flipping maps it back to the keypoint (within 0.05 crop px); "unit" (x -> 1 - x) is
    1 / W off."""
    from crop_dots import centroid

    W, H = 96, 128
    crop, keypoint = _wrist_crop(rotation=rotation, size=(W, H))
    mirrored = np.ascontiguousarray(crop[:, ::-1])  # images.flip(-1)
    seen = centroid(mirrored, ((W - 1) - keypoint[0] * W, keypoint[1] * H)) / (W, H)
    flip_index = keypoint_info("coco").flip_index()
    predicted = torch.zeros(1, 17, 2, dtype=torch.float64)
    predicted[0, flip_index[9]] = torch.from_numpy(seen)  # a flip-equivariant model: the dot is the right wrist
    for convention, error in (("pixel", 0.0), ("unit", 1 / W)):
        unflipped = unflip_keypoints(predicted, flip_index, width=W, convention=convention)[0, 9].numpy()
        np.testing.assert_allclose(unflipped - keypoint, [error, 0.0], atol=0.05 / W)


def test_training_flip_mirrors_the_crop_about_its_centre():
    """The training flip (the image mirrored before the crop, mmpose's) mirrors the crop about W / 2, not
    (W - 1) / 2 as ``images.flip(-1)`` does: a keypoint's normalised x becomes 1 - x, and the painted dot is
    there."""
    from crop_dots import centroid

    W, H = 96, 128
    _, keypoint = _wrist_crop(size=(W, H))
    flipped_crop, flipped = _wrist_crop(flip=True, size=(W, H))
    np.testing.assert_allclose(flipped, [1 - keypoint[0], keypoint[1]], atol=1e-6)
    np.testing.assert_allclose(centroid(flipped_crop, flipped * (W, H)) / (W, H), flipped, atol=0.05 / W)


# ---- sizes of the paper's models ----

def test_parameter_counts():
    """Sub-modules against the spec's counts under Deformable DETR's layer definitions (4 levels), and the
    totals of this implementation (the paper reports none; the spec estimates ~35.9M for R-50 NE6 ND6)."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    torch.manual_seed(0)
    model = build_model(TFPoseConfig(levels="C2-C5"))[0]
    assert count(model.backbone) == 23_508_032
    assert count(model.encoder.layers[0]) == 756_864
    assert count(model.decoder.layers[0]) == 1_020_544
    assert count(model.decoder.coord_heads[0]) == 132_098
    assert count(model.heatmap_head) == 3_151_633  # training only
    main = build_model(TFPoseConfig())[0]  # R-50, C3-C5, NE6, ND6
    assert count(main) - count(main.heatmap_head) == 35_598_318
    assert count(build_model(TFPoseConfig(backbone_depth=18))[0].backbone) == 11_176_512


@pytest.mark.parametrize("row", [0, 9], ids=["R50-NE6-Table5", "R18-NE0-Tables1-2"])
def test_flops_fit_the_paper(row):
    """The paper's "GFLOPs" are GMACs: FlopCounterMode's FLOPs / 2 (deformable sampling uncounted) fit
    within 2% (``python -m posetr.models.tfpose.flops`` lists every model; docs/performance.md)."""
    name, overrides, size, paper = PAPER_MODELS[row]
    cfg = dataclasses.replace(TFPoseConfig(), **overrides)
    torch.manual_seed(0)
    gmac = model_gmacs(cfg, size)
    assert gmac == pytest.approx(paper, rel=0.02), name
    assert model_gmacs(cfg, size, sampling=True) > gmac


# ---- training ----

def test_overfit_synthetic_crops_is_coarse_to_fine():
    """Spec's smoke test: a few synthetic crops memorised; every layer's L1 falls and the last layer ends
    more accurate than the first."""
    torch.manual_seed(0)
    model, criterion, _ = build_model(tiny_config(dec_layers=3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)
    images, masks, targets = make_crops(B=8)
    first = None
    for _ in range(40):
        losses = criterion(model(images, masks), targets)
        first = first or {k: v.item() for k, v in losses.items()}
        optimizer.zero_grad()
        weighted_total(criterion, losses).backward()
        optimizer.step()
    with torch.no_grad():
        layers = criterion(model.eval()(images, masks), targets)
    for k in ("loss_kpt_0", "loss_kpt_1", "loss_kpt"):
        assert layers[k].item() < 0.3 * first[k]
    assert layers["loss_kpt"].item() < layers["loss_kpt_0"].item()


@pytest.mark.parametrize("name", ["tfpose_r50_coco_256x192", "tfpose_r50_coco_384x288", "tfpose_r18_ablation"])
def test_recipe_configs_lr_groups_and_cosine_schedule(name):
    """Paper: base lr 4e-3 with a cosine schedule, x0.1 for the transformer (encoder, decoder with its
    sampling offsets, queries and coordinate MLPs, level embedding); the rest at the base lr. The crops of
    the config's size with the full augmentation, evaluation on the detection file with the flip test."""
    import os

    from posetr.config import load_config
    from posetr.engine.train import build_optimizer, build_scheduler

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, "configs", f"{name}.yaml"))
    assert cfg.model.name == "tfpose" and cfg.train.lr_schedule == "cosine"
    assert cfg.data.input_size == ([384, 288] if "384x288" in name else [256, 192]) and cfg.data.augment == "full"
    assert not cfg.data.use_gt_bbox and cfg.data.det_file.endswith("COCO_val2017_detections_AP_H_56_person.json")
    assert cfg.eval.flip_test
    small = dataclasses.replace(cfg.model, backbone_width=8, d_model=32, n_heads=4, dim_feedforward=64)
    model = build_model(small)[0]
    optimizer = build_optimizer(model, cfg.train)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    for param_name, p in model.named_parameters():
        slow = param_name.split(".")[0] in ("encoder", "decoder", "level_embed")
        assert lr_of[id(p)] == pytest.approx(4e-4 if slow else 4e-3), param_name
    scheduler = build_scheduler(optimizer, cfg.train)
    optimizer.step()  # no gradients: a no-op, in the order the trainer calls them
    for _ in range(cfg.train.epochs // 2):
        scheduler.step()
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(2e-3, rel=1e-2)
    with pytest.raises(ValueError, match="lr_schedule"):
        build_scheduler(optimizer, dataclasses.replace(cfg.train, lr_schedule="linear"))


# ---- the CLI on the real COCO sample ----

def _tiny_cli_config(tmp_path, name="cfg.yaml", **data):
    """configs/tfpose_overfit_coco_sample.yaml with the tiny model, 64 x 48 crops and one short epoch."""
    import os

    import yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "configs", "tfpose_overfit_coco_sample.yaml")) as f:
        values = yaml.safe_load(f)
    values["model"].update(backbone_width=8, d_model=32, n_heads=4, dim_feedforward=64, enc_layers=1,
                           dec_layers=2, heatmap_channels=8)
    values["data"].update(input_size=[64, 48], **data)
    values["train"].update(epochs=1, repeats=1, device="cpu")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_cli_train_eval_predict(shared_data, tmp_path):
    """TFPose through ``python -m posetr``: train (GT crops, flip test, COCOeval), eval on GT boxes and on a
    detection file, predict on given boxes and on whole images."""
    import json
    import os

    from posetr import cli
    from posetr.engine.evaluate import STAT_NAMES
    from standin_top_down import check_cli_predict

    root = os.path.join(shared_data, "coco_sample")
    out = tmp_path / "out"
    cfg = _tiny_cli_config(tmp_path)
    assert cli.main(["train", "--config", cfg, "--data-root", root, "--output-dir", str(out)]) == 0
    metrics = json.load(open(out / "metrics.json"))
    assert set(metrics) == set(STAT_NAMES) and 0 <= metrics["AP"] <= 1
    assert len(json.load(open(out / "results.json"))) == 12  # one person per ground-truth crop
    ckpt = str(out / "last.pth")
    assert cli.main(["eval", "--config", cfg, "--checkpoint", ckpt, "--data-root", root,
                     "--output-dir", str(tmp_path / "gt")]) == 0
    assert json.load(open(tmp_path / "gt" / "eval_last_metrics.json")) == metrics
    ann = json.load(open(os.path.join(root, "annotations", "person_keypoints_sample.json")))
    det_file = tmp_path / "det.json"
    det_file.write_text(json.dumps([{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
                                    for a in ann["annotations"]]))
    det_cfg = _tiny_cli_config(tmp_path, "det.yaml", use_gt_bbox=False, det_file=str(det_file))
    assert cli.main(["eval", "--config", det_cfg, "--checkpoint", ckpt, "--data-root", root,
                     "--output-dir", str(tmp_path / "det")]) == 0
    assert set(json.load(open(tmp_path / "det" / "eval_last_metrics.json"))) == set(STAT_NAMES)
    check_cli_predict(cli, config=cfg, checkpoint=ckpt, root=root, tmp_path=tmp_path)
