"""CLI: train / eval / predict end to end (stand-in model), readable errors, and short PETR and POET runs."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from posetr import cli
from posetr.engine import run as run_module
from posetr.engine import train as train_module
from standin_petr import build_tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERFIT = os.path.join(REPO, "configs", "petr_overfit_coco_sample.yaml")


def _small_config(tmp_path, model=None, config=OVERFIT, data=None, **train):
    with open(config) as f:
        values = yaml.safe_load(f)
    values["model"].update(model or {})
    values["data"].update(test_size=128, max_size=160, batch_size=2, num_workers=0, **(data or {}))
    values["train"].update(epochs=1, repeats=1, device="cpu", **train)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setattr(train_module, "_default_build", build_tiny)
    monkeypatch.setattr(run_module, "_default_build", build_tiny)


def test_train_eval_predict_standin(tmp_path, shared_data, standin, capsys):
    cfg = _small_config(tmp_path)
    root = os.path.join(shared_data, "coco_sample")
    out = tmp_path / "out"
    assert cli.main(["train", "--config", cfg, "--data-root", root, "--output-dir", str(out)]) == 0
    assert "AP" in json.load(open(out / "metrics.json"))
    ckpt = str(out / "last.pth")
    assert cli.main(["train", "--config", cfg, "--data-root", root, "--output-dir", str(out), "--resume", ckpt]) == 0
    ev = tmp_path / "ev"
    assert cli.main(["eval", "--config", cfg, "--checkpoint", ckpt, "--data-root", root,
                     "--output-dir", str(ev)]) == 0
    assert json.load(open(ev / "eval_last_metrics.json")) == json.load(open(out / "metrics.json"))
    image = os.path.join(root, "images", "000000000785.jpg")
    pred = tmp_path / "pred"
    assert cli.main(["predict", "--config", cfg, "--checkpoint", ckpt, "--output-dir", str(pred), image]) == 0
    entries = json.load(open(pred / "predictions.json"))
    assert entries[0]["image"] == image and len(entries[0]["people"][0]["keypoints"]) == 17
    assert os.path.getsize(pred / "000000000785_pose.png") > 0


def test_train_without_data_root_uses_synthetic(tmp_path, standin):
    out = tmp_path / "out"
    assert cli.main(["train", "--config", _small_config(tmp_path), "--output-dir", str(out)]) == 0
    assert os.path.isdir(out / "synthetic_data" / "images") and os.path.isfile(out / "metrics.json")


def test_readable_errors(tmp_path, capsys, standin):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--config", str(tmp_path / "nope.yaml")])
    assert exc.value.code == 2 and "config file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(SystemExit):
        cli.main(["train", "--config", str(bad)])
    assert "unknown key(s) ['epoch']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--config", _small_config(tmp_path), "--data-root", str(tmp_path / "missing"),
                  "--output-dir", str(tmp_path / "o")])
    assert "is not a directory" in capsys.readouterr().err


TINY = {
    "petr": (OVERFIT, dict(backbone_width=8, d_model=32, dim_feedforward=64, enc_layers=1, num_queries=10,
                           kpt_branch_hidden=32, num_detections=10), {}),
    # POET with its own augmentation (flip, rotation, coarse dropout, multi-scale resize / crop)
    "poet": (os.path.join(REPO, "configs", "poet_overfit_coco_sample.yaml"),
             dict(backbone_width=8, d_model=32, dim_feedforward=64, enc_layers=1, dec_layers=2, num_queries=10),
             dict(augment="poet", train_sizes=[96, 128])),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_short_model_run_through_the_cli(tmp_path, shared_data, name):
    """A few iterations of the real model: train -> checkpoint -> metrics.json -> eval -> predict."""
    config, tiny, data = TINY[name]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cfg = _small_config(tmp_path, model=tiny, config=config, data=data)
    root = os.path.join(shared_data, "coco_sample")
    out = tmp_path / "out"

    def posetr(*args):
        proc = subprocess.run([sys.executable, "-m", "posetr", *args], cwd=str(tmp_path), env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Warning" not in proc.stderr, proc.stderr[-3000:]  # #17 item 12: the main-job path stays warning-free

    posetr("train", "--config", cfg, "--data-root", root, "--output-dir", str(out))
    assert 0.0 <= json.load(open(out / "metrics.json"))["AP"] <= 1.0
    posetr("eval", "--config", cfg, "--checkpoint", str(out / "last.pth"), "--data-root", root)
    posetr("predict", "--config", cfg, "--checkpoint", str(out / "last.pth"), "--output-dir",  # a few steps' model:
           str(tmp_path / "pred"), "--score-threshold", "0", os.path.join(root, "images", "000000000785.jpg"))
    assert len(json.load(open(tmp_path / "pred" / "predictions.json"))[0]["people"]) > 0


def test_predict_read_image_names_a_decompression_bomb(tmp_path, monkeypatch):
    """#14 item 13 for predict: PIL's DecompressionBombError becomes the skippable RuntimeError naming the file."""
    from PIL import Image

    from posetr.engine.predict import read_image

    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 4096 pixels > 2 x 10: PIL raises
    with pytest.raises(RuntimeError, match="big.png"):
        read_image(str(path))
