"""PETR end to end on CPU: forward/backward, losses without people, matcher vs scipy, posetr vs reference
kernels, postprocess output and a short overfit run."""
import dataclasses

import pytest
import torch
from scipy.optimize import linear_sum_assignment

import posetr.ops
from posetr.models import build_model
from posetr.models.petr import PETRConfig
from posetr.models.common.kernels import get_kernels
from posetr.models.common.targets import pad_targets
from posetr.models.petr.matcher import PoseHungarianMatcher, focal_cost, keypoint_l1_cost
from posetr.ops.reference import pairwise_oks_pytorch
from kernel_agreement import assert_twins_agree_in_float64, weighted_total

HAS_LAP = hasattr(posetr.ops, "batched_linear_sum_assignment")
needs_lap = pytest.mark.skipif(not HAS_LAP, reason="posetr.ops.batched_linear_sum_assignment not available")
OPS = ["reference", pytest.param("posetr", marks=needs_lap)]


pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def tiny_config(**overrides):
    cfg = PETRConfig(backbone_depth=18, backbone_width=8, backbone_norm="group", d_model=32, n_heads=4,
                      dim_feedforward=64, dropout=0.0, enc_layers=1, dec_layers=2, joint_dec_layers=2,
                      num_queries=12, kpt_branch_hidden=32, num_detections=10)
    return dataclasses.replace(cfg, **overrides)


def make_target(num_people, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(num_people, 1, 2, generator=g) * 0.5 + 0.25
    xy = (centre + (torch.rand(num_people, 17, 2, generator=g) - 0.5) * 0.3).clamp(0.02, 0.98)
    v = torch.full((num_people, 17, 1), 2.0)
    if num_people:
        v[0, :4] = 0  # some unlabelled joints
    lo, hi = xy.amin(1), xy.amax(1)
    return {"keypoints": torch.cat([xy, v], -1), "area": ((hi - lo).prod(-1) * h * w * 0.6).clamp(min=16),
            "boxes": torch.cat([(lo + hi) / 2, hi - lo], -1), "labels": torch.zeros(num_people, dtype=torch.long),
            "size": torch.tensor([h, w]), "orig_size": torch.tensor([2 * h, 2 * w]), "image_id": seed}


def make_batch(people=(2, 1), h=64, w=96):
    images = torch.randn(len(people), 3, h, w, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(len(people), h, w, dtype=torch.bool)
    masks[-1, :, w - 16:] = True
    targets = [make_target(n, h, w - (16 if b == len(people) - 1 else 0), seed=b) for b, n in enumerate(people)]
    return images, masks, targets


@pytest.mark.parametrize("ops", OPS)
def test_forward_backward_shapes_and_gradients(ops):
    torch.manual_seed(0)
    model, criterion, post = build_model(tiny_config(ops=ops))
    images, masks, targets = make_batch()
    out = model(images, masks)
    Q, K = 12, 17
    assert out["pred_logits"].shape == (2, Q, 1) and out["pred_keypoints"].shape == (2, Q, K, 2)
    assert len(out["aux_outputs"]) == 1 and len(out["joint_outputs"]) == 2
    assert out["pred_keypoints_refined"].shape == (2, Q, K, 2)
    S = out["enc_outputs"]["pred_logits"].shape[1]
    assert S == 8 * 12 + 4 * 6 + 2 * 3 + 1 * 2 and out["enc_outputs"]["pred_keypoints"].shape == (2, S, K, 2)
    assert out["pred_heatmap"].shape == (2, K, 8, 12) and out["heatmap_mask"].shape == (2, 8, 12)
    losses = criterion(out, targets)
    assert set(losses) == set(criterion.weight_dict)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    weighted_total(criterion, losses).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    model.eval()
    out = model(images, masks)
    assert "pred_heatmap" not in out
    results = post(out, torch.stack([t["orig_size"] for t in targets]))
    assert [r["keypoints"].shape for r in results] == [(10, K, 3)] * 2


@pytest.mark.parametrize("people", [(0, 0), (0, 2)])
def test_criterion_with_images_without_people(people):
    torch.manual_seed(0)
    model, criterion, _ = build_model(tiny_config(ops="reference"))
    images, masks, targets = make_batch(people)
    losses = criterion(model(images, masks), targets)
    assert set(losses) == set(criterion.weight_dict)
    assert all(torch.isfinite(v) for v in losses.values())
    if people == (0, 0):
        for k, v in losses.items():
            if "kpt" in k or "oks" in k:
                assert v == 0, k
    weighted_total(criterion, losses).backward()


def matcher_inputs(B=3, N=40, K=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(B, N, 1, generator=g, dtype=torch.float64),
               "pred_keypoints": torch.rand(B, N, K, 2, generator=g, dtype=torch.float64)}
    targets = [make_target(n, 100, 120, seed=seed + b) for b, n in enumerate([3, 0, 7][:B])]
    return outputs, targets


@pytest.mark.parametrize("ops", OPS)
def test_matcher_equals_scipy_per_image(ops):
    outputs, targets = matcher_inputs()
    sigmas = torch.rand(17, dtype=torch.float64) * 0.1 + 0.02
    matcher = PoseHungarianMatcher(cost_class=2.0, cost_kpt=70.0, cost_oks=7.0, focal_alpha=0.25, focal_gamma=2.0,
                                   sigmas=sigmas, kernels=get_kernels(ops))
    indices = matcher(outputs, targets)
    for b, t in enumerate(targets):
        gt, area, scale, _ = pad_targets([t], 17, "cpu", torch.float64)
        pred = outputs["pred_keypoints"][b:b + 1]
        px = scale[:, None, None, :]
        cost = (2.0 * focal_cost(outputs["pred_logits"][b:b + 1, :, 0], 0.25, 2.0)[:, :, None]
                + 70.0 * keypoint_l1_cost(pred, gt)
                - 7.0 * pairwise_oks_pytorch(pred * px, gt[..., :2] * px, gt[..., 2] > 0, area, sigmas))[0]
        rows, cols = linear_sum_assignment(cost.numpy())
        assert indices[b][0].tolist() == rows.tolist() and indices[b][1].tolist() == cols.tolist()


@needs_lap
def test_posetr_and_reference_ops_agree_in_float64():
    torch.manual_seed(0)
    model, criterion, post = build_model(tiny_config(ops="posetr"))
    ref_model, ref_criterion, _ = build_model(tiny_config(ops="reference"))
    images, masks, targets = make_batch()
    for t in targets:
        t["keypoints"], t["area"], t["boxes"] = t["keypoints"].double(), t["area"].double(), t["boxes"].double()
    assert_twins_agree_in_float64(
        model, criterion, ref_model, ref_criterion, images, masks, targets,
        output_keys=("pred_logits", "pred_keypoints", "pred_keypoints_refined", "pred_heatmap"))


def test_build_model_errors():
    with pytest.raises(ValueError, match="ops"):
        build_model(tiny_config(ops="cuda"))
    with pytest.raises(ValueError, match="num_keypoints"):
        build_model(tiny_config(num_keypoints=14))
    model, _, _ = build_model(tiny_config(dataset="crowdpose", num_keypoints=14, ops="reference"))
    assert model(torch.randn(1, 3, 128, 128), torch.zeros(1, 128, 128, dtype=torch.bool))["pred_keypoints"].shape[2] == 14


@pytest.mark.parametrize("ops", [OPS[-1]])
def test_overfit_two_images_loss_decreases(ops):
    """A tiny PETR memorises two synthetic images: the weighted loss falls well below its start."""
    torch.manual_seed(0)
    model, criterion, post = build_model(tiny_config(ops=ops, num_queries=10))
    images, masks, targets = make_batch((2, 1), h=64, w=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    history = []
    for _ in range(40):
        loss = weighted_total(criterion, criterion(model(images, masks), targets))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        history.append(loss.item())
    assert sum(history[-5:]) / 5 < 0.6 * sum(history[:5]) / 5, history


@pytest.mark.parametrize("ops", OPS)
def test_bf16_autocast_step(ops):
    torch.manual_seed(0)
    model, criterion, post = build_model(tiny_config(ops=ops))
    images, masks, targets = make_batch()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(images, masks)
        losses = criterion(out, targets)
    total = sum(criterion.weight_dict[k] * v.float() for k, v in losses.items())
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        results = post(model(images, masks), torch.tensor([[64, 96], [64, 80]]))
    assert results[0]["keypoints"].shape == (10, 17, 3)
