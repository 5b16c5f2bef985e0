"""``--set section.key=value`` config overrides (posetr/config.py apply_overrides, the CLI's train / eval /
predict): YAML values over the file, validated like the file."""
import pytest

from posetr import cli
from posetr.config import load_config
from posetr.engine import train as train_module


def test_overrides_over_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n")
    cfg = load_config(str(path), overrides=["train.epochs=5", "model.num_queries=100",
                                            "data.train_sizes=[480, 512]", "data.root=null"])
    assert cfg.train.epochs == 5 and cfg.model.num_queries == 100 and cfg.data.train_sizes == [480, 512]
    assert cfg.data.root is None
    assert load_config(None, overrides=["model.name=poet", "model.num_queries=7"]).model.num_queries == 7


@pytest.mark.parametrize("override, message", [
    ("train.epochz=5", "--set: config: unknown key.*'epochz'.*'train'"),
    ("train.epochs=five", "train.epochs must be int"),
    ("model.num_queries=0", "model.num_queries must be >= 1"),
    ("epochs=5", "must be section.key=value"),
    ("train.epochs", "must be section.key=value"),
    ("train.epochs.x=1", "train.epochs must be int"),
])
def test_bad_override_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides=[override])


def test_cli_set(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(train_module, "train", lambda cfg, **kw: seen.setdefault("cfg", cfg) and {})
    assert cli.main(["train", "--set", "train.epochs=2", "model.num_queries=11", "--set", "train.lr=0.001"]) == 0
    cfg = seen["cfg"]
    assert (cfg.train.epochs, cfg.model.num_queries, cfg.train.lr) == (2, 11, 0.001)
    with pytest.raises(SystemExit):
        cli.main(["train", "--set", "train.bogus=1"])
    err = capsys.readouterr().err
    assert "'bogus'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
