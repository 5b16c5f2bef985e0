"""posetr's OKS equals pycocotools' COCOeval.computeOks on real annotations (COCO, OCHuman with
COCO sigmas, CrowdPose with box areas and CrowdPose sigmas) against perturbed predictions."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch

from posetr.data.keypoints import keypoint_info
from posetr.ops import oks, pairwise_oks

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

DATASETS = [
    # (folder, annotation file, sigmas, area from the box (CrowdPose has no 'area' field))
    ("coco_sample", "person_keypoints_sample.json", "coco", False),
    ("ochuman_sample", "ochuman_sample.json", "coco", False),
    ("crowdpose_sample", "crowdpose_sample.json", "crowdpose", True),
]


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _load_gt(path, box_area):
    with open(path) as f:
        dataset = json.load(f)
    if box_area:
        for ann in dataset["annotations"]:
            ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    coco = COCO()
    coco.dataset = dataset
    _quiet(coco.createIndex)
    return coco


def _detections(coco, K, seed):
    """Per image: two noisy copies of every labelled person plus one random pose, distinct scores."""
    rng = np.random.default_rng(seed)
    dets = []
    for img_id in sorted(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        img = coco.loadImgs([img_id])[0]
        poses = []
        for ann in anns:
            if ann["num_keypoints"] == 0:
                continue
            kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(K, 3)[:, :2]
            scale = np.sqrt(max(ann["area"], 1.0))
            for noise in (0.03, 0.15):
                poses.append(kpts + rng.normal(0.0, noise * scale, size=(K, 2)))
        poses.append(rng.uniform(0, [img["width"], img["height"]], size=(K, 2)))
        for pose in poses[:20]:  # computeOks keeps the top maxDets[-1] = 20
            flat = np.concatenate([pose, np.ones((K, 1))], axis=1).reshape(-1)
            dets.append(dict(image_id=img_id, category_id=1, keypoints=flat.tolist(), score=float(rng.uniform())))
    return dets


def _cases(shared_data, folder, ann_file, sigmas_name, box_area, seed=0):
    """Yields per image: (pycocotools OKS [D, G], pred [D, K, 2], gt [G, K, 2], visible [G, K], area [G])."""
    info = keypoint_info(sigmas_name)
    K = info.num_keypoints
    coco_gt = _load_gt(os.path.join(shared_data, folder, "annotations", ann_file), box_area)
    coco_dt = _quiet(coco_gt.loadRes, _detections(coco_gt, K, seed))
    evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
    evaluator.params.kpt_oks_sigmas = np.asarray(info.sigmas)
    _quiet(evaluator._prepare)
    for img_id in evaluator.params.imgIds:
        expected = np.asarray(evaluator.computeOks(img_id, 1))
        gts = evaluator._gts[img_id, 1]
        dts = evaluator._dts[img_id, 1]
        dts = [dts[i] for i in np.argsort([-d["score"] for d in dts], kind="mergesort")][:20]
        if not len(gts) or not len(dts):
            continue
        pred = torch.tensor([d["keypoints"] for d in dts], dtype=torch.float64).view(len(dts), K, 3)[..., :2]
        g = torch.tensor([a["keypoints"] for a in gts], dtype=torch.float64).view(len(gts), K, 3)
        area = torch.tensor([a["area"] for a in gts], dtype=torch.float64)
        yield torch.from_numpy(expected), pred, g[..., :2].contiguous(), g[..., 2] > 0, area


@pytest.mark.parametrize("folder,ann_file,sigmas_name,box_area", DATASETS, ids=[d[0] for d in DATASETS])
def test_pairwise_oks_equals_pycocotools(shared_data, folder, ann_file, sigmas_name, box_area):
    sigmas = torch.tensor(keypoint_info(sigmas_name).sigmas, dtype=torch.float64)
    checked = 0
    for expected, pred, gt, visible, area in _cases(shared_data, folder, ann_file, sigmas_name, box_area):
        labelled = visible.any(-1)
        ours = pairwise_oks(pred, gt, visible, area, sigmas)
        torch.testing.assert_close(ours[:, labelled], expected[:, labelled], rtol=1e-12, atol=1e-15)
        # People without a labelled keypoint: posetr gives 0 (pycocotools uses its box distance).
        assert (ours[:, ~labelled] == 0).all()
        ours32 = pairwise_oks(pred.float(), gt.float(), visible, area.float(), sigmas.float())
        torch.testing.assert_close(ours32[:, labelled].double(), expected[:, labelled], rtol=0, atol=2e-6)
        checked += int(labelled.sum()) * len(pred)
    assert checked > 0


@pytest.mark.parametrize("folder,ann_file,sigmas_name,box_area", DATASETS, ids=[d[0] for d in DATASETS])
def test_matched_and_batched_oks_equal_pycocotools(shared_data, folder, ann_file, sigmas_name, box_area):
    sigmas = torch.tensor(keypoint_info(sigmas_name).sigmas, dtype=torch.float64)
    cases = list(_cases(shared_data, folder, ann_file, sigmas_name, box_area, seed=1))
    # Matched pairs: every (prediction, labelled person) pair of every image, flattened.
    preds, gts, vis, areas, expected = [], [], [], [], []
    for exp, pred, gt, visible, area in cases:
        d, g = torch.nonzero(visible.any(-1)[None, :].expand(len(pred), -1), as_tuple=True)
        preds.append(pred[d]), gts.append(gt[g]), vis.append(visible[g]), areas.append(area[g])
        expected.append(exp[d, g])
    ours = oks(torch.cat(preds), torch.cat(gts), torch.cat(vis), torch.cat(areas), sigmas)
    torch.testing.assert_close(ours, torch.cat(expected), rtol=1e-12, atol=1e-15)
    # Batched, padded form: every image at once.
    B, K = len(cases), len(sigmas)
    N = max(len(c[1]) for c in cases)
    M = max(len(c[2]) for c in cases)
    pred = torch.zeros(B, N, K, 2, dtype=torch.float64)
    gt = torch.zeros(B, M, K, 2, dtype=torch.float64)
    visible = torch.zeros(B, M, K, dtype=torch.bool)
    area = torch.ones(B, M, dtype=torch.float64)
    for b, (_, p, g, v, a) in enumerate(cases):
        pred[b, : len(p)], gt[b, : len(g)], visible[b, : len(g)], area[b, : len(g)] = p, g, v, a
    batched = pairwise_oks(pred, gt, visible, area, sigmas)
    for b, (exp, p, g, v, _) in enumerate(cases):
        labelled = v.any(-1)
        torch.testing.assert_close(batched[b, : len(p), : len(g)][:, labelled], exp[:, labelled], rtol=1e-12, atol=1e-15)

