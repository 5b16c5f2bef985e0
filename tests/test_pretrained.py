"""Pretrained backbones: the recipes refuse to train a random ResNet, and weights load from torchvision's and
mmdet/mmpose's file layouts (posetr/models/common/pretrained.py)."""
import glob
import os

import pytest
import torch

from posetr import cli
from posetr.config import load_config
from posetr.models import build_model
from posetr.models.common.backbone import ResNet, build_resnet
from posetr.models.common.pretrained import check_backbone_init
from posetr.models.petr import PETRConfig
from test_models import torchvision_resnet_keys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torchvision_resnet50_shapes(width: int = 8) -> dict:
    """Key -> shape of a torchvision ``resnet50()`` state dict: the names hard-coded from torchvision's layout
    (``test_models.torchvision_resnet_keys``), the shapes of posetr's ResNet-50 at ``width`` (64 is
    torchvision's), ``fc`` with 1000 classes and the BatchNorm counters."""
    own = {k: tuple(v.shape) for k, v in ResNet(depth=50, width=width).state_dict().items()}
    shapes = {}
    for k in torchvision_resnet_keys(50):
        if k.endswith("num_batches_tracked"):
            shapes[k] = ()
        elif k.startswith("fc."):
            shapes[k] = (1000, 32 * width) if k == "fc.weight" else (1000,)
        else:
            shapes[k] = own[k]
    return shapes


def _random_state(shapes: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(1000, dtype=torch.long)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * 0.1
    return state


def _save(path, obj) -> str:
    torch.save(obj, path)
    return str(path)


def test_torchvision_layout_is_resnet50s():
    """The test's layout has torchvision ResNet-50's 320 entries at torchvision's shapes."""
    shapes = torchvision_resnet50_shapes(64)
    assert len(shapes) == 320
    assert shapes["layer4.2.conv3.weight"] == (2048, 512, 1, 1) and shapes["fc.weight"] == (1000, 2048)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)


@pytest.mark.parametrize("layout", ["torchvision", "mmdet", "mmpose_dataparallel"])
def test_weights_load_from_each_layout(tmp_path, layout):
    state = _random_state(torchvision_resnet50_shapes(8))
    backbone_only = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if layout == "torchvision":
        checkpoint = state
    elif layout == "mmdet":  # a whole detector checkpoint: meta + state_dict with backbone./neck./head. keys
        checkpoint = {"meta": {"epoch": 12}, "state_dict": {
            **{f"backbone.{k}": v for k, v in backbone_only.items()},
            "neck.convs.0.conv.weight": torch.zeros(4, 4, 1, 1), "bbox_head.fc_cls.weight": torch.zeros(2, 4)}}
    else:
        checkpoint = {"state_dict": {f"module.backbone.{k}": v for k, v in backbone_only.items()},
                      "module.keypoint_head.final_layer.weight": torch.zeros(17, 4, 1, 1)}
    path = _save(tmp_path / f"{layout}.pth", checkpoint)
    model = build_resnet(depth=50, width=8, norm="frozen_bn", pretrained=path)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in backbone_only.items() if not k.endswith("num_batches_tracked"))
    # DETR / opera: a pretrained backbone keeps the stem and layer1 frozen
    assert not any(p.requires_grad for p in model.layer1.parameters()) and model.layer2[0].conv1.weight.requires_grad


def test_wrong_files_are_named(tmp_path):
    state = _random_state(torchvision_resnet50_shapes(8))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_resnet(depth=50, width=8, norm="frozen_bn", pretrained=str(tmp_path / "nope.pth"))
    r18 = _save(tmp_path / "r18.pth", ResNet(depth=18, width=8).state_dict())
    with pytest.raises(RuntimeError, match=r"ResNet-50 .*r18.pth.*shape mismatch"):
        build_resnet(depth=50, width=8, norm="frozen_bn", pretrained=r18)
    partial = _save(tmp_path / "partial.pth", {k: v for k, v in state.items() if not k.startswith("layer4.")})
    with pytest.raises(RuntimeError, match=r"partial.pth.*missing \['layer4.0.conv1.weight'"):
        build_resnet(depth=50, width=8, norm="frozen_bn", pretrained=partial)
    extra = _save(tmp_path / "extra.pth", {**state, "layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match=r"extra.pth.*missing \[\], unexpected \['layer5.0.conv1.weight'\]"):
        build_resnet(depth=50, width=8, norm="frozen_bn", pretrained=extra)


def test_petr_builds_with_the_weights(tmp_path):
    state = _random_state(torchvision_resnet50_shapes(16))
    cfg = PETRConfig(backbone_width=16, d_model=32, n_heads=4, dim_feedforward=64, enc_layers=1, dec_layers=1,
                     joint_dec_layers=1, num_queries=10, kpt_branch_hidden=32,
                     pretrained_backbone=_save(tmp_path / "r50.pth", state))
    check_backbone_init(cfg)
    model, _, _ = build_model(cfg)
    assert torch.equal(model.backbone.layer3[2].conv2.weight, state["layer3.2.conv2.weight"])


RECIPES = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))


@pytest.mark.parametrize("path", RECIPES, ids=os.path.basename)
def test_every_recipe_says_how_its_backbone_starts(path):
    """The full recipes ask for ImageNet weights and refuse to train without them; the small memorisation
    configs say scratch explicitly."""
    cfg = load_config(path)
    small = "overfit" in os.path.basename(path) or "demo" in os.path.basename(path)  # the no-argument train demo
    assert cfg.model.backbone_init == ("scratch" if small else "imagenet")
    if small:
        check_backbone_init(cfg.model)
        return
    files = {"resnet": r"resnet(50-0676ba61|18-f37072fd).*mmdet/mmpose", "hrnet": r"hrnet_w32-36af842e.*mmpose HRNet",
             "mobilenetv2": r"mobilenet_v2_batch256.*mmpose MobileNetV2"}[getattr(cfg.model, "backbone", "resnet")]
    with pytest.raises(ValueError, match=rf"model\.pretrained_backbone is not set.*{files}.*backbone_init: scratch"):
        check_backbone_init(cfg.model)
    cfg.model.backbone_init = "scratch"
    check_backbone_init(cfg.model)
    cfg.model.pretrained_backbone = "r50.pth"
    with pytest.raises(ValueError, match="'scratch' but model.pretrained_backbone is 'r50.pth'"):
        check_backbone_init(cfg.model)
    cfg.model.backbone_init = "random"
    with pytest.raises(ValueError, match="backbone_init must be one of"):
        check_backbone_init(cfg.model)


def test_cli_refuses_the_r50_recipe_without_weights(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--config", os.path.join(REPO, "configs", "petr_r50_coco.yaml"),
                  "--data-root", str(tmp_path), "--output-dir", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "model.pretrained_backbone" in err and "resnet50-0676ba61.pth or resnet50-11ad3fa6.pth" in err
    assert not os.path.exists(tmp_path / "out")  # nothing started
