"""OKS-NMS on posetr.ops.pairwise_oks against mmpose 0.x's ``oks_iou`` / ``oks_nms`` (rebuilt from their
description: pair area = mean of the two areas, every keypoint counted, suppress OKS > threshold)."""
import numpy as np
import pytest
import torch

from posetr.data.keypoints import COCO_SIGMAS
from posetr.engine.pose_nms import oks_matrix, oks_nms

SIGMAS = np.array(COCO_SIGMAS)


def _mmpose_oks_iou(g, d, a_g, a_d):
    variances = (SIGMAS * 2) ** 2
    out = np.zeros(len(d))
    for n in range(len(d)):
        dx, dy = d[n, :, 0] - g[:, 0], d[n, :, 1] - g[:, 1]
        e = (dx ** 2 + dy ** 2) / variances / ((a_g + a_d[n]) / 2 + np.spacing(1)) / 2
        out[n] = np.sum(np.exp(-e)) / len(e)
    return out


def _mmpose_oks_nms(kpts, scores, areas, thr):
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(int(i))
        ovr = _mmpose_oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]])
        order = order[np.where(ovr <= thr)[0] + 1]
    return keep


def _cluster_poses(rng, people=4, copies=4):
    """Poses of a few people, each repeated with small jitter (duplicate detections), with areas that
    differ between copies (crop boxes of different sizes)."""
    base = rng.uniform(0, 400, (people, 17, 2))
    kpts = np.concatenate([base[p] + rng.normal(0, rng.uniform(0.5, 8), (17, 2)) for p in range(people)
                           for _ in range(copies)]).reshape(-1, 17, 2)
    areas = rng.uniform(2000, 20000, len(kpts))
    scores = rng.uniform(0, 1, len(kpts))
    return kpts, scores, areas


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.5, 0.9])
def test_matches_mmpose_oks_nms(seed, threshold):
    kpts, scores, areas = _cluster_poses(np.random.default_rng(seed))
    keep = oks_nms(torch.from_numpy(kpts), torch.from_numpy(scores), torch.from_numpy(areas), sigmas=COCO_SIGMAS,
                   threshold=threshold)
    assert keep == _mmpose_oks_nms(kpts, scores, areas, threshold)
    assert len(keep) < len(kpts)


def test_oks_matrix_uses_the_mean_area():
    kpts, _, areas = _cluster_poses(np.random.default_rng(1), people=2, copies=3)
    oks = oks_matrix(kpts, areas, sigmas=COCO_SIGMAS).numpy()
    expected = np.stack([_mmpose_oks_iou(kpts[i], kpts, areas[i], areas) for i in range(len(kpts))])
    np.testing.assert_allclose(oks, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(oks, oks.T, rtol=1e-12)
    np.testing.assert_allclose(np.diag(oks), 1.0)


def test_ties_keep_mmpose_order_and_edge_cases():
    kpts = np.zeros((3, 17, 3))
    kpts[2, :, 0] = 500.0  # far from the other two
    scores, areas = np.array([0.5, 0.5, 0.5]), np.full(3, 1000.0)
    assert oks_nms(kpts, scores, areas, sigmas=COCO_SIGMAS) == _mmpose_oks_nms(kpts[..., :2], scores, areas, 0.9)
    assert oks_nms(kpts, scores, areas, sigmas=COCO_SIGMAS) == [2, 1]
    assert oks_nms(np.zeros((0, 17, 2)), [], [], sigmas=COCO_SIGMAS) == []
    with pytest.raises(ValueError, match="3 poses, 2 scores"):
        oks_nms(kpts, scores[:2], areas, sigmas=COCO_SIGMAS)
