"""PETR test-time augmentation (posetr/engine/tta.py): unflip, soft-NMS merge on hand-made people, and
one scale without flip equals plain evaluation."""
import json
import os

import pytest
import torch
from torch.utils.data import DataLoader

from posetr.config import Config
from posetr.data.build import build_dataset
from posetr.data.collate import collate
from posetr.data.keypoints import keypoint_info
from posetr.engine.evaluate import evaluate
from posetr.engine.tta import evaluate_tta, merge_views, unflip_keypoints
from standin_petr import build_tiny


def test_unflip_twice_is_identity():
    index = keypoint_info("coco").flip_index()
    kpts = torch.rand(5, 17, 3) * 100
    once = unflip_keypoints(kpts, width=100.0, flip_index=index)
    assert torch.allclose(once[:, 2, 0], 100.0 - kpts[:, 1, 0])  # left eye <- mirrored right eye
    assert torch.allclose(unflip_keypoints(once, width=100.0, flip_index=index), kpts)


def _person(x0, y0, x1, y1):
    k = torch.zeros(2, 3)
    k[0, :2] = torch.tensor([x0, y0])
    k[1, :2] = torch.tensor([x1, y1])
    return k


def test_merge_views_soft_nms_by_hand():
    a = {"scores": torch.tensor([0.9, 0.6]), "keypoints": torch.stack([_person(0, 0, 10, 10), _person(50, 50, 60, 60)])}
    b = {"scores": torch.tensor([0.8, 0.0]), "keypoints": torch.stack([_person(0, 0, 10, 8), _person(0, 0, 1, 1)])}
    merged = merge_views([a, b])
    # IoU of the two boxes of person 1: 80 / 100 = 0.8 > 0.5 -> 0.8 * (1 - 0.8) = 0.16; score 0 dropped
    assert merged["scores"].tolist() == pytest.approx([0.9, 0.6, 0.16])
    assert torch.equal(merged["keypoints"][2, :, :2], b["keypoints"][0, :, :2])
    assert torch.all(merged["keypoints"][..., 2] == 1.0)


def test_one_scale_without_flip_equals_plain_eval(shared_data, tmp_path):
    cfg = Config()
    cfg.data.test_size, cfg.data.max_size = 320, 480
    ds = build_dataset(cfg.data, root=os.path.join(shared_data, "coco_sample"), split="val", train=False)
    model, _, post = build_tiny(cfg.model)
    evaluate(model, post, DataLoader(ds, batch_size=1, collate_fn=collate), device=torch.device("cpu"),
             output_dir=str(tmp_path / "plain"))
    cfg.eval.scales = [320]
    evaluate_tta(model, post, ds, eval_cfg=cfg.eval, data_cfg=cfg.data, device=torch.device("cpu"),
                 output_dir=str(tmp_path / "tta"))
    plain = json.load(open(tmp_path / "plain" / "results.json"))
    tta = json.load(open(tmp_path / "tta" / "results.json"))
    assert plain == tta and len(plain) > 0
    cfg.eval.flip = True  # two views per image, merged
    metrics = evaluate_tta(model, post, ds, eval_cfg=cfg.eval, data_cfg=cfg.data, device=torch.device("cpu"))
    assert set(metrics) >= {"AP", "AP50"}
