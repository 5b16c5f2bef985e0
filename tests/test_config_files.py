"""Shipped configs: `--config NAME` resolves to the packaged YAML (installed or source tree), the no-argument
`train` is the synthetic demo and says so first (#17 item 3)."""
import os

import pytest

from posetr import cli, config_files
from posetr.config import load_config
from posetr.engine import train as train_module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")


@pytest.mark.parametrize("name", ["petr_overfit_coco_sample", "petr_overfit_coco_sample.yaml",
                                  "configs/petr_overfit_coco_sample.yaml"])
def test_name_resolves_to_shipped_config_from_any_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: only the shipped one can match
    path = config_files.resolve_config(name)
    assert os.path.samefile(path, os.path.join(CONFIGS, "petr_overfit_coco_sample.yaml"))


def test_existing_path_is_used_as_given(tmp_path):
    own = tmp_path / "petr_overfit_coco_sample.yaml"  # a user's file shadows the shipped name
    own.write_text("train:\n  epochs: 3\n")
    assert config_files.resolve_config(str(own)) == str(own)
    assert load_config(config_files.resolve_config(str(own))).train.epochs == 3


def test_unknown_name_lists_the_shipped_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="petr_overfit_coco_sample") as exc:
        config_files.resolve_config("petr_overfit_coco_sampel")
    assert "neither a file nor a shipped config" in str(exc.value)
    with pytest.raises(FileNotFoundError):  # a missing path is not looked up by its base name elsewhere
        config_files.resolve_config(str(tmp_path / "sub" / "petr_overfit_coco_sample.yaml"))


def test_installed_layout_is_found_first(tmp_path, monkeypatch):
    """A wheel installs configs/ as posetr/configs/ (setup.py package_dir): that folder wins."""
    installed = tmp_path / "site" / "posetr" / "configs"
    installed.mkdir(parents=True)
    (installed / "petr_demo_synthetic.yaml").write_text("train:\n  epochs: 1\n")
    monkeypatch.setattr(config_files, "_CANDIDATE_DIRS", (str(installed), str(tmp_path / "nowhere")))
    monkeypatch.chdir(tmp_path)
    assert config_files.available_configs() == ["petr_demo_synthetic"]
    assert config_files.resolve_config("petr_demo_synthetic") == str(installed / "petr_demo_synthetic.yaml")
    monkeypatch.setattr(config_files, "_CANDIDATE_DIRS", (str(tmp_path / "nowhere"),))
    with pytest.raises(FileNotFoundError, match="not installed"):
        config_files.resolve_config("petr_demo_synthetic")


def test_setup_maps_configs_into_the_package():
    """setup.py installs the top-level configs/ as package data posetr/configs/*.yaml (the wheel holds them)."""
    text = open(os.path.join(REPO, "setup.py")).read()
    assert 'package_dir={"posetr.configs": "configs"}' in text
    assert 'package_data={"posetr.configs": ["*.yaml"]}' in text


def test_every_shipped_config_loads():
    for name in config_files.available_configs():
        load_config(config_files.resolve_config(name))


def test_train_without_config_is_the_demo_and_says_so_first(monkeypatch, capsys):
    seen = {}

    def fake_train(cfg, **kwargs):
        seen["cfg"], seen["printed"] = cfg, capsys.readouterr().out
        return {}

    monkeypatch.setattr(train_module, "train", fake_train)
    assert cli.main(["train"]) == 0
    cfg = seen["cfg"]
    assert cfg.data.root is None and cfg.model.name == "petr"  # synthetic data, no download
    assert cfg.train.epochs * cfg.train.repeats * cfg.data.synthetic_images // cfg.data.batch_size <= 400
    assert "demo" in seen["printed"] and "minutes" in seen["printed"]


def test_config_by_name_on_the_command_line(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(train_module, "train", lambda cfg, **kwargs: seen.setdefault("cfg", cfg) and {})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--config", "poet_overfit_coco_sample"]) == 0
    assert seen["cfg"].model.name == "poet"
