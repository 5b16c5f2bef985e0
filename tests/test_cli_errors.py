"""One-line CLI errors, no silent no-ops, run records, eval under its own name, config from the checkpoint
(#14 items 7, 10-12; #17 items 6-8). Stand-in model on the synthetic set."""
import json
import os

import pytest
import yaml

from posetr import cli
from posetr.engine import run as run_module
from posetr.engine import train as train_module
from posetr.engine.evaluate import coco_keypoint_eval
from standin_petr import build_tiny
from test_cli import _small_config


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setattr(train_module, "_default_build", build_tiny)
    monkeypatch.setattr(run_module, "_default_build", build_tiny)


def _fails(capsys, *argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(list(argv))
    err = capsys.readouterr().err
    assert exc.value.code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def trained(tmp_path, standin):
    cfg = _small_config(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["train", "--config", cfg, "--output-dir", str(out)]) == 0
    return cfg, out


def test_run_records_and_checkpoint_names(trained, capsys):
    cfg, out = trained
    for name in ("last.pth", "best.pth", "config.yaml", "train.log", "epochs.jsonl", "metrics.json"):
        assert (out / name).is_file(), name
    assert yaml.safe_load(open(out / "config.yaml"))["train"]["epochs"] == 1
    lines = [json.loads(line) for line in open(out / "epochs.jsonl")]
    assert len(lines) == 1 and "loss" in lines[0]["losses"] and "AP" in lines[0]["metrics"]
    log = open(out / "train.log").read()
    assert "output directory" in log and "epoch 0:" in log and "\r" not in log


def test_resume_auto_finished_and_lr_warning(trained, tmp_path, capsys):
    cfg, out = trained
    capsys.readouterr()
    assert cli.main(["train", "--config", cfg, "--output-dir", str(out), "--resume", "auto"]) == 0
    assert "nothing to train" in capsys.readouterr().out
    values = yaml.safe_load(open(cfg))
    values["train"].update(epochs=2, lr=1e-3)
    cfg2 = tmp_path / "cfg2.yaml"
    cfg2.write_text(yaml.safe_dump(values))
    assert cli.main(["train", "--config", str(cfg2), "--output-dir", str(out), "--resume", "auto"]) == 0
    captured = capsys.readouterr()
    assert "warning: train.lr is 0.001 in the config" in captured.err
    assert len(open(out / "epochs.jsonl").readlines()) == 2


def test_eval_own_name_and_checkpoint_config(trained, tmp_path, capsys):
    cfg, out = trained
    before = open(out / "metrics.json").read()
    assert cli.main(["eval", "--checkpoint", str(out / "best.pth")]) == 0  # no --config: the checkpoint's
    assert open(out / "metrics.json").read() == before
    assert json.load(open(out / "eval_best_metrics.json")) == json.loads(before)
    values = yaml.safe_load(open(cfg))
    values["model"]["num_queries"] = 7
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(values))
    err = _fails(capsys, "eval", "--config", str(other), "--checkpoint", str(out / "last.pth"))
    assert "model.num_queries" in err


def test_one_line_errors(trained, tmp_path, capsys):
    cfg, out = trained
    (tmp_path / "afile").write_text("x")
    assert "is a file" in _fails(capsys, "eval", "--checkpoint", str(out / "last.pth"), "--output-dir",
                                 str(tmp_path / "afile" / "sub"))
    (tmp_path / "bad.pth").write_bytes(b"not a zip")
    assert "cannot read checkpoint" in _fails(capsys, "eval", "--config", cfg, "--checkpoint", str(tmp_path / "bad.pth"))
    values = yaml.safe_load(open(cfg))
    values["train"]["epochs"] = 0
    zero = tmp_path / "zero.yaml"
    zero.write_text(yaml.safe_dump(values))
    assert "epochs" in _fails(capsys, "train", "--config", str(zero), "--output-dir", str(tmp_path / "z"))
    import torch
    state = torch.load(out / "last.pth", weights_only=True)
    torch.save({"model": state["model"]}, tmp_path / "weights.pth")
    assert "weights only" in _fails(capsys, "train", "--config", cfg, "--output-dir", str(tmp_path / "w"),
                                    "--resume", str(tmp_path / "weights.pth"))
    assert "unknown op" in _fails(capsys, "bench", "--ops", "nonexistent")
    assert "--repeats" in _fails(capsys, "bench", "--repeats", "0")
    if not torch.cuda.is_available():
        assert "cuda" in _fails(capsys, "bench", "--device", "cuda", "--quick")


def test_debug_shows_traceback(tmp_path, capsys, monkeypatch):
    (tmp_path / "bad.pth").write_bytes(b"not a zip")
    monkeypatch.setenv("POSETR_DEBUG", "1")
    with pytest.raises(SystemExit):
        cli.main(["eval", "--checkpoint", str(tmp_path / "bad.pth")])
    assert "Traceback" in capsys.readouterr().err


def test_undefined_metrics_are_null(shared_data):
    from posetr.config import Config
    from posetr.data.build import build_dataset

    ds = build_dataset(Config().data, root=os.path.join(shared_data, "coco_sample"), split="val", train=False)
    for ann in ds.coco.dataset["annotations"]:  # every person medium-sized: no ground truth in the large range
        ann["area"] = 40.0 ** 2
    ds.coco.createIndex()
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in ds.coco.dataset["annotations"] if a["num_keypoints"] > 0]
    metrics, _ = coco_keypoint_eval(ds.coco, results, sigmas=ds.info.sigmas)
    assert metrics["APl"] is None and metrics["AP"] > 0.9
    assert coco_keypoint_eval(ds.coco, [], sigmas=ds.info.sigmas)[0]["APl"] is None
