"""predict (#14 item 8, #17 item 9): one PNG per input also for equal base names, unreadable images skipped
and reported without losing predictions.json, --score-threshold / --device / --coco-json, readable drawings,
default output under the run directory. Bottom-up (PETR stand-in) and top-down (stand-in) alike."""
import json
import os
import shutil

import pytest
import torch
import yaml
from PIL import Image
from pycocotools.coco import COCO

from posetr import cli
from posetr.data.keypoints import keypoint_info
from posetr.engine import predict as predict_module
from posetr.engine import run as run_module
from posetr.engine import train as train_module
from posetr.engine.predict import BOX_PALETTE, SIDE_COLOURS, draw_people, output_names, predict_files
from standin_petr import build_tiny
from standin_top_down import build_tiny_top_down

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "000000000785.jpg"


def _checkpoint(folder):
    """The checkpoint train wrote in ``folder`` (``last.pth`` or, before run records, ``checkpoint.pth``)."""
    return next(str(folder / n) for n in ("last.pth", "checkpoint.pth") if (folder / n).exists())


def _trained(tmp_path_factory, shared_data, build, kind, config):
    tmp = tmp_path_factory.mktemp(kind)
    with open(os.path.join(REPO, "configs", config)) as f:
        values = yaml.safe_load(f)
    values["data"].update(test_size=128, max_size=160, input_size=[64, 48], batch_size=2, num_workers=0)
    values["train"].update(epochs=1, repeats=1, device="cpu")
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(values))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "_default_build", build)
        mp.setattr(train_module, "_default_data_kind", lambda model_cfg: kind)
        assert cli.main(["train", "--config", str(cfg), "--data-root", os.path.join(shared_data, "coco_sample"),
                         "--output-dir", str(tmp / "run")]) == 0
    return str(cfg), _checkpoint(tmp / "run")


@pytest.fixture(scope="module")
def shared_sample():
    from conftest import SHARED_DATA

    path = os.path.normpath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.skip(f"shared sample data not found at {path}")
    return path


@pytest.fixture(scope="module", params=["bottom_up", "top_down"])
def trained(request, tmp_path_factory, shared_sample):
    """(kind, config, checkpoint) of a one-epoch stand-in run on the COCO sample."""
    build, config = {"bottom_up": (build_tiny, "petr_overfit_coco_sample.yaml"),
                     "top_down": (build_tiny_top_down, "tfpose_overfit_coco_sample.yaml")}[request.param]
    return (request.param, *_trained(tmp_path_factory, shared_sample, build, request.param, config))


@pytest.fixture
def standin(trained, monkeypatch):
    kind = trained[0]
    monkeypatch.setattr(run_module, "_default_build", build_tiny if kind == "bottom_up" else build_tiny_top_down)
    monkeypatch.setattr(run_module, "_default_data_kind", lambda model_cfg: kind)
    return trained


def _image(shared_sample):
    return os.path.join(shared_sample, "coco_sample", "images", IMAGE)


def test_output_names_are_unique():
    assert output_names(["a/x.jpg", "b/y.png"]) == ["x", "y"]
    assert output_names(["a/x.jpg", "b/x.jpg"]) == ["a_x", "b_x"]
    assert output_names(["p/a/x.jpg", "q/a/x.jpg", "y.jpg"]) == ["p_a_x", "q_a_x", "y"]
    assert output_names(["x.jpg", "x.jpg"]) == ["x", "x-2"]
    assert output_names(["d/x.jpg", "d/x.png"]) == ["x", "x-2"]
    names = output_names(["a/x.jpg", "b/x.jpg", "c/a_x.jpg"])
    assert len(set(names)) == 3


def test_same_base_name_and_unreadable_images(standin, shared_sample, tmp_path, capsys):
    """a/x.jpg and b/x.jpg give two PNGs; a corrupt and a missing image after good ones are skipped and
    reported (exit 1), predictions.json keeps the good ones."""
    _, cfg, ckpt = standin
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(_image(shared_sample), tmp_path / sub / "x.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    images = [str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg"), str(corrupt), str(tmp_path / "gone.jpg")]
    out = tmp_path / "pred"
    assert cli.main(["predict", "--config", cfg, "--checkpoint", ckpt, "--output-dir", str(out), *images]) == 1
    captured = capsys.readouterr()
    assert "skipped 2 unreadable image(s)" in captured.out and "2 PNG(s)" in captured.out
    assert "corrupt.jpg" in captured.err and "gone.jpg" in captured.err
    entries = json.load(open(out / "predictions.json"))
    assert [e["image"] for e in entries] == images
    assert [e.get("drawing") for e in entries] == ["a_x_pose.png", "b_x_pose.png", None, None]
    assert "cannot read image" in entries[2]["error"] and "does not exist" in entries[3]["error"]
    assert sorted(os.listdir(out)) == ["a_x_pose.png", "b_x_pose.png", "predictions.json"]


def test_error_midway_keeps_finished_predictions(tmp_path, shared_sample):
    calls = []

    def infer(image, path):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("model failed")
        return [{"score": 0.9, "keypoints": [[10.0, 10.0, 0.9]] * 17}]

    with pytest.raises(RuntimeError, match="model failed"):
        predict_files([_image(shared_sample)] * 3, infer, output_dir=str(tmp_path), info=keypoint_info("coco"),
                      threshold=0.3, coco_json=str(tmp_path / "coco.json"))
    assert len(json.load(open(tmp_path / "predictions.json"))) == 1
    assert len(json.load(open(tmp_path / "coco.json"))) == 1


def test_threshold_device_coco_json_and_default_output_dir(standin, shared_sample, tmp_path, capsys):
    _, cfg, ckpt = standin
    image = _image(shared_sample)
    coco = tmp_path / "results" / "keypoints.json"
    assert cli.main(["predict", "--config", cfg, "--checkpoint", ckpt, "--score-threshold", "0", "--device", "cpu",
                     "--coco-json", str(coco), image]) == 0
    out = os.path.join(os.path.dirname(ckpt), "predictions")  # the run directory, not the working directory
    entries = json.load(open(os.path.join(out, "predictions.json")))
    people = entries[0]["people"]
    assert people and os.path.isfile(os.path.join(out, entries[0]["drawing"]))
    assert [p["score"] for p in people] == sorted((p["score"] for p in people), reverse=True)
    results = json.load(open(coco))
    assert len(results) == len(people) and {r["image_id"] for r in results} == {785}  # the COCO file stem
    assert all(r["category_id"] == 1 and len(r["keypoints"]) == 17 * 3 for r in results)
    gt = COCO(os.path.join(shared_sample, "coco_sample", "annotations", "person_keypoints_sample.json"))
    assert len(gt.loadRes(str(coco)).getAnnIds()) == len(people)  # pycocotools reads it as results
    assert cli.main(["predict", "--config", cfg, "--checkpoint", ckpt, "--score-threshold", "1.0", image]) == 0
    kept = json.load(open(os.path.join(out, "predictions.json")))[0]["people"]
    assert all(p["score"] >= 1.0 for p in kept) and len(kept) < len(people)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", "--config", cfg, "--checkpoint", ckpt, "--score-threshold", "1.5", image])
    assert exc.value.code == 2 and "--score-threshold must be in [0, 1]" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_device_cuda_without_a_gpu_is_one_line(standin, shared_sample, capsys):
    _, cfg, ckpt = standin
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", "--config", cfg, "--checkpoint", ckpt, "--device", "cuda", _image(shared_sample)])
    assert exc.value.code == 2 and "--device cuda: no CUDA device" in capsys.readouterr().err


def _person(scale):
    """A standing figure in a ``100 * scale`` pixel square image (COCO-17)."""
    from posetr.data.synthetic import _TEMPLATE

    return {"score": 0.87, "keypoints": [[(50 + 60 * x) * scale, (15 + 75 * y) * scale, 1.0] for x, y in _TEMPLATE]}


@pytest.mark.parametrize("scale", [1, 20])
def test_drawing_scales_and_colours_by_side(scale):
    info = keypoint_info("coco")
    size = 100 * scale
    person = _person(scale)
    drawn = draw_people(Image.new("RGB", (size, size), (0, 0, 0)), [person], info=info)
    kp = person["keypoints"]

    def colours_between(a, b):  # around the middle of limb (a, b)
        x, y = round((kp[a][0] + kp[b][0]) / 2), round((kp[a][1] + kp[b][1]) / 2)
        return {drawn.getpixel((x + dx, y + dy)) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}

    left_shin, right_shin = (15, 13), (16, 14)  # ankle-knee, left and right
    assert SIDE_COLOURS["left"] in colours_between(*left_shin)
    assert SIDE_COLOURS["right"] in colours_between(*right_shin)
    assert SIDE_COLOURS["centre"] in colours_between(11, 12)  # the hip line crosses sides
    # the limb is wider on the larger image: count the limb's pixels across the left shin
    y = round((kp[15][1] + kp[13][1]) / 2)
    row = [drawn.getpixel((x, y)) for x in range(size)]
    assert row.count(SIDE_COLOURS["left"]) >= max(1, size // 250 - 2)  # 8 pixels wide at 2000 x 2000
    # the person's box (keypoints' extent) and its score label in the first palette colour
    assert any(drawn.getpixel((round(min(k[0] for k in kp)), yy)) == BOX_PALETTE[0] for yy in range(size))


def test_drawing_uses_the_given_box():
    info = keypoint_info("coco")
    person = dict(_person(1), box=[5.0, 5.0, 90.0, 90.0])
    drawn = draw_people(Image.new("RGB", (100, 100)), [person], info=info)
    assert drawn.getpixel((95, 50)) == BOX_PALETTE[0] and drawn.getpixel((30, 50)) != BOX_PALETTE[0]  # edge x = 95


def test_drawing_handles_the_crowdpose_layout():
    info = keypoint_info("crowdpose")
    person = {"score": 0.5, "keypoints": [[10.0 + 5 * i, 20.0 + 3 * i, 1.0] for i in range(14)]}
    draw_people(Image.new("RGB", (120, 90)), [person], info=info)


def test_predict_module_has_one_loop():
    """Bottom-up and top-down predict share predict_files (no second copy of the loop)."""
    import inspect

    from posetr.engine import predict_top_down

    assert "predict_files(" in inspect.getsource(predict_top_down.predict_images_top_down)
    assert "predict_files(" in inspect.getsource(predict_module.predict_images)
