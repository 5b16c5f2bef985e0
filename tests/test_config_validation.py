"""Config values are checked at load time (posetr/config.py): types from the defaults and the dataclass
annotations (list elements too), ranges from one rules table, unknown keys by path."""
import pytest

from posetr.config import config_from_dict


@pytest.mark.parametrize("values, message", [
    ({"train": {"lr_drop": 0}}, "train.lr_drop must be >= 1"),
    ({"train": {"lr": 0.0}}, "train.lr must be > 0"),
    ({"train": {"lr_milestones": [10, 0]}}, "train.lr_milestones must be >= 1"),
    ({"train": {"lr_milestones": [10.5]}}, r"train.lr_milestones\[0\] must be int"),
    ({"train": {"lr_linear_proj_names": []}}, "train.lr_linear_proj_names must be a non-empty list"),
    ({"train": {"epochs": "5"}}, "train.epochs must be int"),
    ({"train": {"epochs": -1}}, "train.epochs must be >= 0"),
    ({"data": {"batch_size": 0}}, "data.batch_size must be >= 1"),
    ({"data": {"train_sizes": []}}, "data.train_sizes must be a non-empty list"),
    ({"data": {"train_sizes": ["480"]}}, r"data.train_sizes\[0\] must be int"),
    ({"data": {"input_size": 256}}, "data.input_size must be a list"),
    ({"model": {"num_queries": 0}}, "model.num_queries must be >= 1"),
    ({"model": {"name": "poet", "num_queries": 0}}, "model.num_queries must be >= 1"),
    ({"model": {"dropout": 1.5}}, r"model.dropout must be in \[0, 1\)"),
    ({"eval": {"draw_threshold": 2}}, r"eval.draw_threshold must be in \[0, 1\]"),
    ({"train": {"bogus": 1}}, "unknown key.*'bogus'.*'train'"),
])
def test_bad_value_named(values, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(values)


def test_good_values_pass():
    cfg = config_from_dict({"train": {"epochs": 0, "lr_milestones": [200, 250], "lr": 1}, "model": {"num_queries": 1}})
    assert cfg.train.epochs == 0 and cfg.train.lr == 1.0 and cfg.model.num_queries == 1
