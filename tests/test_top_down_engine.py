"""Top-down engine path with stand-in models (no Poseur / TFPose): evaluation from ground-truth boxes and
from a detection file (OKS-NMS removes duplicate boxes), the flip test, train / eval / predict from Python
and the CLI."""
import json
import os

import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from posetr import cli
from posetr.config import Config
from posetr.data.build import build_dataset, collate_for
from posetr.data.crop_geometry import crop_affine_matrix
from posetr.engine import run as run_module
from posetr.engine import train as train_module
from posetr.engine.evaluate import STAT_NAMES
from posetr.engine.evaluate_top_down import evaluate_top_down
from posetr.engine.predict_top_down import load_boxes
from posetr.engine.run import run_eval
from posetr.engine.train import train
from posetr.models import model_data_kind
from standin_top_down import OracleTopDownModel, build_tiny_top_down, jittered_detections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_CFG = Config().model  # dataset coco, 17 keypoints: all the stand-ins read


def _loader(data_cfg, root, batch_size=5):
    ds = build_dataset(data_cfg, root=root, split="val", train=False, kind="top_down")
    return DataLoader(ds, batch_size=batch_size, collate_fn=collate_for("top_down"))


def _postprocessor():
    return build_tiny_top_down(MODEL_CFG)[2]


def test_model_data_kind():
    assert model_data_kind("petr") == "bottom_up"
    with pytest.raises(ValueError, match="model.name must be one of"):
        model_data_kind("nope")


@pytest.mark.parametrize("flip_test", [False, True])
def test_ground_truth_boxes_give_ap_one(shared_data, tmp_path, flip_test):
    """Ground-truth keypoints fed through the contract (crop coordinates -> postprocessor -> pixels)."""
    loader = _loader(Config().data, os.path.join(shared_data, "coco_sample"))
    batches = [torch.stack([t["keypoints"][:, :2] for t in targets]) for _, _, targets in loader]
    flip_index = list(_postprocessor().flip_index)
    model = OracleTopDownModel(batches, flip_index=flip_index if flip_test else None)
    metrics = evaluate_top_down(model, _postprocessor(), loader, device=torch.device("cpu"), output_dir=str(tmp_path),
                                flip_test=flip_test)
    assert metrics["AP"] == pytest.approx(1.0) and set(metrics) == set(STAT_NAMES)
    assert len(json.load(open(tmp_path / "results.json"))) == 12
    assert len(model.seen) == len(batches) * (2 if flip_test else 1)
    if flip_test:
        assert torch.equal(model.seen[1], model.seen[0].flip(-1))


def test_detection_file_with_duplicate_boxes(shared_data, tmp_path):
    """Two jittered detections per labelled person: the crops differ, the poses mapped back coincide and
    OKS-NMS keeps one per person (threshold 1.0 keeps both)."""
    root = os.path.join(shared_data, "coco_sample")
    gt = build_dataset(Config().data, root=root, split="val", train=False, kind="top_down").instances
    detections = jittered_detections([(inst["image_id"], inst["bbox"]) for inst in gt])
    det_file = tmp_path / "det.json"
    det_file.write_text(json.dumps(detections))
    cfg = Config().data
    cfg.use_gt_bbox, cfg.det_file = False, str(det_file)
    loader = _loader(cfg, root)
    assert len(loader.dataset) == 2 * len(gt)

    def oracle_batches():  # the ground truth of each detection, in that detection's crop (normalised)
        out = []
        for _, _, targets in loader:
            crops = []
            for t in targets:
                inst = gt[t["bbox_id"] // 2]
                affine = crop_affine_matrix(t["center"].numpy(), t["scale"].numpy(), rotation=0.0,
                                            output_size=(192, 256))
                crops.append(torch.from_numpy((inst["keypoints"][:, :2] @ affine[:, :2].T + affine[:, 2]) / [192, 256]))
            out.append(torch.stack(crops).float())
        return out

    results, ap = {}, {}
    for threshold in (0.9, 1.0):
        out = tmp_path / str(threshold)
        ap[threshold] = evaluate_top_down(OracleTopDownModel(oracle_batches()), _postprocessor(), loader,
                                          device=torch.device("cpu"), output_dir=str(out),
                                          nms_threshold=threshold)["AP"]
        results[threshold] = json.load(open(out / "results.json"))
    assert len(results[0.9]) == len(gt) and len(results[1.0]) == 2 * len(gt)
    assert ap[0.9] == pytest.approx(1.0) and ap[1.0] < 0.95  # duplicates scoring above a person are false positives


def _top_down_yaml(tmp_path, **data):
    with open(os.path.join(REPO, "configs", "petr_overfit_coco_sample.yaml")) as f:
        values = yaml.safe_load(f)
    values["data"].update(input_size=[128, 96], augment="full", batch_size=4, num_workers=0, **data)
    values["train"].update(epochs=1, repeats=1, device="cpu")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_train_and_eval_top_down_from_python(shared_data, tmp_path):
    cfg = Config()
    cfg.data.root = os.path.join(shared_data, "coco_sample")
    cfg.data.input_size, cfg.data.batch_size, cfg.data.num_workers = [128, 96], 4, 0
    cfg.data.photometric = cfg.data.cutout = True
    cfg.train.epochs, cfg.train.device = 1, "cpu"
    metrics = train(cfg, output_dir=str(tmp_path), build_model=build_tiny_top_down, data_kind="top_down")
    assert set(metrics) == set(STAT_NAMES) and 0 <= metrics["AP"] <= 1
    again = run_eval(cfg, checkpoint=str(tmp_path / "last.pth"), output_dir=str(tmp_path / "ev"),
                     build_model=build_tiny_top_down, data_kind="top_down")
    assert again == metrics


@pytest.fixture
def top_down_standin(monkeypatch):
    for module in (train_module, run_module):
        monkeypatch.setattr(module, "_default_build", build_tiny_top_down)
        monkeypatch.setattr(module, "_default_data_kind", lambda model_cfg: "top_down")


def test_cli_train_eval_predict_top_down(shared_data, tmp_path, top_down_standin):
    root = os.path.join(shared_data, "coco_sample")
    out = tmp_path / "out"
    cfg = _top_down_yaml(tmp_path)
    assert cli.main(["train", "--config", cfg, "--data-root", root, "--output-dir", str(out)]) == 0
    assert set(json.load(open(out / "metrics.json"))) == set(STAT_NAMES)
    ckpt = str(out / "last.pth")
    ann = json.load(open(os.path.join(root, "annotations", "person_keypoints_sample.json")))
    det_file = tmp_path / "det.json"
    det_file.write_text(json.dumps([{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
                                    for a in ann["annotations"]]))
    det_cfg = _top_down_yaml(tmp_path, use_gt_bbox=False, det_file=str(det_file))
    assert cli.main(["eval", "--config", det_cfg, "--checkpoint", ckpt, "--data-root", root,
                     "--output-dir", str(tmp_path / "ev")]) == 0
    assert set(json.load(open(tmp_path / "ev" / "eval_last_metrics.json"))) == set(STAT_NAMES)
    image = os.path.join(root, "images", "000000000785.jpg")
    other = os.path.join(root, "images", "000000040083.jpg")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"000000000785.jpg": [[280, 40, 230, 350, 0.8], [10, 10, 100, 200]]}))
    pred = tmp_path / "pred"
    assert cli.main(["predict", "--config", cfg, "--checkpoint", ckpt, "--output-dir", str(pred),
                     "--boxes", str(boxes), image, other]) == 0
    entries = json.load(open(pred / "predictions.json"))
    assert [len(e["people"]) for e in entries] == [2, 1]  # the listed boxes; the whole image for the other
    with Image.open(other) as im:
        assert entries[1]["people"][0]["box"] == [0.0, 0.0, float(im.width), float(im.height)]
    assert len(entries[0]["people"][0]["keypoints"]) == 17 and os.path.getsize(pred / "000000040083_pose.png") > 0


def test_cli_predict_errors(shared_data, tmp_path, top_down_standin, capsys):
    root = os.path.join(shared_data, "coco_sample")
    cfg = _top_down_yaml(tmp_path)
    image = os.path.join(root, "images", "000000000785.jpg")
    bad = tmp_path / "boxes.json"
    bad.write_text(json.dumps({"000000000785.jpg": [[1, 2, 0, 4]]}))
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", "--config", cfg, "--checkpoint", str(tmp_path / "none.pth"), "--boxes", str(bad), image])
    assert exc.value.code == 2 and "box 0 of '000000000785.jpg' must be" in capsys.readouterr().err


def test_cli_boxes_need_a_top_down_model(shared_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", "--config", _top_down_yaml(tmp_path), "--checkpoint", str(tmp_path / "none.pth"),
                  "--boxes", str(tmp_path / "b.json"), os.path.join(shared_data, "coco_sample", "images", "x.jpg")])
    assert exc.value.code == 2 and "--boxes is for top-down models" in capsys.readouterr().err


def test_load_boxes(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"a.jpg": [[1, 2, 3, 4], [1, 2, 3, 4, 0.5]], "b.jpg": []}))
    assert load_boxes(str(path)) == {"a.jpg": [([1.0, 2.0, 3.0, 4.0], 1.0), ([1.0, 2.0, 3.0, 4.0], 0.5)], "b.jpg": []}
    for content, match in [([[1, 2, 3, 4]], "must be a JSON object"), ({"a.jpg": [1, 2, 3, 4]}, "box 0 of 'a.jpg'"),
                           ({"a.jpg": {"x": 1}}, "must map to a list"),
                           ({"a.jpg": [[1, 2, 3, 4, "high"]]}, "box 0 of 'a.jpg'")]:
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=match):
            load_boxes(str(path))
    with pytest.raises(FileNotFoundError, match="boxes file"):
        load_boxes(str(tmp_path / "none.json"))
