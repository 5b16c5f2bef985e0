"""One package per model: ``model.name`` picks the config dataclass and the builder."""
import pytest

from posetr.config import config_from_dict, load_config
from posetr.models import MODEL_NAMES, build_model, model_config_class
from posetr.models.common.config import BaseModelConfig
from posetr.models.petr import PETRConfig


def test_every_model_package_has_a_config_with_its_name():
    for name in MODEL_NAMES:
        cls = model_config_class(name)
        assert issubclass(cls, BaseModelConfig) and cls().name == name


def test_model_name_selects_the_config_class():
    cfg = config_from_dict({"model": {"name": "petr", "d_model": 64}})
    assert type(cfg.model) is PETRConfig and cfg.model.d_model == 64
    assert type(config_from_dict({}).model) is PETRConfig  # default model
    assert type(config_from_dict({"model": {"d_model": 64}}).model) is PETRConfig


def test_unknown_model_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"model.name must be one of \['petr'"):
        config_from_dict({"model": {"name": "openpose"}})
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: openpose\n")
    with pytest.raises(ValueError, match="bad.yaml.*model.name"):
        load_config(str(path))


def test_build_model_checks_the_config_class():
    cfg = PETRConfig()
    cfg.name = "nonexistent"
    with pytest.raises(ValueError, match="model.name"):
        build_model(cfg)
    with pytest.raises(ValueError, match="needs a PETRConfig"):
        build_model(BaseModelConfig(name="petr"))


def test_every_model_package_declares_its_data_kind():
    import importlib

    for name in MODEL_NAMES:
        assert importlib.import_module(f"posetr.models.{name}").DATA_KIND in ("bottom_up", "top_down")
