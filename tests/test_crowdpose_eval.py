"""CrowdPose protocol (posetr/engine/crowdpose_eval.py) on a hand-computed case built on
../shared/data/crowdpose_sample: exact poses on one image, one pose shifted to OKS 0.72 (with the
protocol's 0.53 * w * h area) on the other; crowd levels by crowdIndex under both splits."""
import copy
import json
import math
import os

import numpy as np
import pytest

from posetr.data.coco import load_coco
from posetr.data.keypoints import CROWDPOSE_SIGMAS
from posetr.engine.crowdpose_eval import crowd_level, crowdpose_keypoint_eval

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "crowdpose_sample",
                      "annotations", "crowdpose_sample.json")
R = np.linspace(0, 1, 101)


def _ap(recall_per_threshold):
    """Mean over the 10 OKS thresholds of the 101-point AP when precision is 1 up to that recall."""
    return float(np.mean([np.mean(R <= r + 1e-12) for r in recall_per_threshold]))


def _case(tmp_path, crowd_indices):
    with open(SAMPLE) as f:
        data = json.load(f)
    for image in data["images"]:
        image["crowdIndex"] = crowd_indices[image["id"]]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    coco = load_coco(str(path), box_area=True)
    results = []
    for ann in data["annotations"]:
        if ann["num_keypoints"] == 0:
            continue
        kpts = list(map(float, ann["keypoints"]))
        score = 0.9
        if ann["id"] == 129014:  # shift every joint so each OKS term is exp(-x): OKS = 0.72
            s = 0.53 * ann["bbox"][2] * ann["bbox"][3]
            x = -math.log(0.72)
            for k, sigma in enumerate(CROWDPOSE_SIGMAS):
                kpts[3 * k] += math.sqrt(2 * s * (2 * sigma) ** 2 * x)
            score = 0.5
        for k in range(len(CROWDPOSE_SIGMAS)):
            kpts[3 * k + 2] = 1.0
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kpts, "score": score})
    # a top-scoring detection without any positive keypoint score: dropped by the protocol
    results.append({"image_id": 103319, "category_id": 1, "keypoints": [1.0, 1.0, 0.0] * 14, "score": 0.99})
    return coco, results


def test_hand_computed_ap_and_code_split(tmp_path):
    coco, results = _case(tmp_path, {106848: 0.15, 103319: 0.8})
    metrics, _ = crowdpose_keypoint_eval(coco, copy.deepcopy(results), sigmas=CROWDPOSE_SIGMAS)
    # thresholds 0.50..0.70 (OKS 0.72 >= t): 4/4 matched; 0.75..0.95: 3/4, the shifted pose last
    assert metrics["AP"] == pytest.approx(_ap([1.0] * 5 + [0.75] * 5), abs=1e-6)
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(_ap([0.75]), abs=1e-6)
    assert metrics["AP_easy"] == pytest.approx(1.0)  # 0.15 < 0.2: easy (the toolkit's split)
    assert metrics["AP_medium"] is None  # no image
    assert metrics["AP_hard"] == pytest.approx(_ap([1.0] * 5 + [0.5] * 5), abs=1e-6)  # 0.8 >= 0.8: hard


def test_paper_split_puts_both_images_in_medium(tmp_path):
    coco, results = _case(tmp_path, {106848: 0.15, 103319: 0.8})
    metrics, _ = crowdpose_keypoint_eval(coco, results, sigmas=CROWDPOSE_SIGMAS, split="paper")
    assert metrics["AP_easy"] is None and metrics["AP_hard"] is None
    assert metrics["AP_medium"] == pytest.approx(metrics["AP"])


def test_levels_and_bad_split():
    assert [crowd_level(c) for c in (0.0, 0.19, 0.2, 0.79, 0.8, 1.0)] == ["easy", "easy", "medium", "medium",
                                                                          "hard", "hard"]
    assert [crowd_level(c, split="paper") for c in (0.09, 0.1, 0.8, 0.81)] == ["easy", "medium", "medium", "hard"]
    with pytest.raises(ValueError, match="crowd_split"):
        crowd_level(0.5, split="crowd")


def test_crowdpose_configs_pin_the_protocol():
    from posetr.config import load_config

    root = os.path.join(os.path.dirname(__file__), "..", "configs")
    cfg = load_config(os.path.join(root, "petr_r50_crowdpose.yaml"))
    assert (cfg.data.dataset, cfg.model.num_keypoints) == ("crowdpose", 14)
    assert (cfg.data.train_split, cfg.data.val_split, cfg.eval.crowd_split) == ("trainval", "test", "code")
    sample = load_config(os.path.join(root, "petr_overfit_crowdpose_sample.yaml"))
    assert (sample.data.dataset, sample.model.num_keypoints) == ("crowdpose", 14)
