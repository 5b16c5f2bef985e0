"""HRNet-W32/W48 (posetr.models.common.hrnet): shapes and strides, mmpose parameter names, initialisation,
loading mmpose / ImageNet layouts, errors, and parameter counts (backbone alone and inside Poseur)."""
import functools
from unittest import mock

import pytest
import torch

from posetr.models.common.hrnet import HRNet, build_hrnet, load_mmpose_state_dict


@functools.lru_cache(maxsize=None)
def _meta_hrnet(*, width, multiscale_output=True):
    """For names, shapes and counts: built on the meta device, uninitialised (65 M parameters cost seconds)."""
    with torch.device("meta"), mock.patch.object(HRNet, "_init_weights"):
        return HRNet(width=width, multiscale_output=multiscale_output)


def _num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def hrnet_w32():
    torch.manual_seed(0)
    return HRNet(width=32)


def test_forward_shapes_and_strides(hrnet_w32):
    # training-mode BN: a fresh net's eval output shrinks x0.001 per conv into slow denormals
    with torch.no_grad():
        outputs = hrnet_w32.train()(torch.randn(2, 3, 64, 32))
    assert hrnet_w32.num_channels == [32, 64, 128, 256] and hrnet_w32.strides == [4, 8, 16, 32]
    assert [tuple(o.shape) for o in outputs] == [(2, 32, 16, 8), (2, 64, 8, 4), (2, 128, 4, 2), (2, 256, 2, 1)]
    assert all(torch.isfinite(o).all() and o.abs().amax() > 0 for o in outputs)
    w48 = _meta_hrnet(width=48)
    assert (w48.num_channels, w48.strides) == ([48, 96, 192, 384], [4, 8, 16, 32])


def test_single_output_variant():
    torch.manual_seed(0)
    model = HRNet(width=8, multiscale_output=False)
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 64))
    assert model.num_channels == [8] and model.strides == [4]
    assert [tuple(o.shape) for o in outputs] == [(2, 8, 16, 16)]


def test_bad_arguments_and_inputs(hrnet_w32):
    for width in (0, 32.0, True):
        with pytest.raises(ValueError, match="width"):
            HRNet(width=width)
    with pytest.raises(ValueError, match="backbone_norm"):
        HRNet(width=8, norm="layer")
    for shape in ((1, 3, 48, 32), (1, 3, 64, 40), (3, 64, 64), (1, 1, 64, 64)):
        with pytest.raises(ValueError, match="multiples of 32"):
            hrnet_w32(torch.zeros(shape))


# (name, shape) in mmpose's HRNet-W32 state dict (open-mmlab/mmpose 0.x backbones/hrnet.py + resnet.py blocks).
_MMPOSE_W32_KEYS = {
    "conv1.weight": (64, 3, 3, 3), "bn1.running_var": (64,), "conv2.weight": (64, 64, 3, 3), "bn2.bias": (64,),
    "layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv3.weight": (256, 64, 1, 1),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer1.0.downsample.1.running_mean": (256,),
    "layer1.3.bn3.weight": (256,),
    "transition1.0.0.weight": (32, 256, 3, 3), "transition1.0.1.weight": (32,),
    "transition1.1.0.0.weight": (64, 256, 3, 3), "transition1.1.0.1.bias": (64,),
    "transition2.2.0.0.weight": (128, 64, 3, 3), "transition3.3.0.0.weight": (256, 128, 3, 3),
    "stage2.0.branches.0.0.conv1.weight": (32, 32, 3, 3), "stage2.0.branches.1.3.bn2.weight": (64,),
    "stage3.3.branches.2.3.conv2.weight": (128, 128, 3, 3), "stage4.2.branches.3.0.conv1.weight": (256, 256, 3, 3),
    "stage2.0.fuse_layers.0.1.0.weight": (32, 64, 1, 1), "stage2.0.fuse_layers.0.1.1.weight": (32,),
    "stage2.0.fuse_layers.1.0.0.0.weight": (64, 32, 3, 3), "stage2.0.fuse_layers.1.0.0.1.weight": (64,),
    "stage3.0.fuse_layers.0.2.0.weight": (32, 128, 1, 1),
    "stage3.0.fuse_layers.2.0.0.0.weight": (32, 32, 3, 3), "stage3.0.fuse_layers.2.0.1.0.weight": (128, 32, 3, 3),
    # multiscale_output=True: the last stage-4 module fuses into every branch
    "stage4.2.fuse_layers.3.0.2.0.weight": (256, 32, 3, 3), "stage4.2.fuse_layers.3.2.0.1.weight": (256,),
    "stage4.2.fuse_layers.1.3.0.weight": (64, 256, 1, 1),
}


def test_parameter_names_match_mmpose():
    state = _meta_hrnet(width=32).state_dict()
    assert {k: tuple(state[k].shape) for k in _MMPOSE_W32_KEYS if k in state} == _MMPOSE_W32_KEYS
    absent = ("transition2.0", "transition2.1", "transition3.2", "stage2.0.fuse_layers.0.0",
              "stage2.0.branches.0.0.downsample", "layer1.1.downsample", "norm1", "fc.", "incre_modules")
    assert not [k for k in state if k.startswith(absent)]
    single = _meta_hrnet(width=32, multiscale_output=False).state_dict()
    assert "stage4.1.fuse_layers.3.0.2.0.weight" in single
    assert not [k for k in single if k.startswith(("stage4.2.fuse_layers.1", "stage4.2.fuse_layers.3"))]


def test_initialisation_as_mmpose(hrnet_w32):
    conv = hrnet_w32.stage4[2].fuse_layers[3][0][2][0].weight  # 256 x 32 x 3 x 3
    assert abs(conv.mean().item()) < 2e-5 and conv.std().item() == pytest.approx(1e-3, rel=0.02)
    norms = [m for m in hrnet_w32.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all((m.weight == 1).all() and (m.bias == 0).all() for m in norms)
    assert all(p.requires_grad for p in hrnet_w32.parameters())


def _save(path, state):
    torch.save(state, path)
    return str(path)


def test_loads_mmpose_and_imagenet_layouts(tmp_path):
    torch.manual_seed(1)
    source = HRNet(width=8)
    with torch.no_grad():
        for tensor in source.state_dict().values():
            if tensor.is_floating_point():  # every weight and BN statistic distinct from a fresh model's
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        expected = source(x)  # training-mode BN: the output does not depend on the running statistics
    # a whole mmpose / Poseur model: backbone under 'backbone.', other parts beside it, mmcv's 'meta'
    pose = {"state_dict": {**{f"backbone.{k}": v for k, v in state.items()},
                           "neck.convs.0.conv.weight": torch.zeros(1), "keypoint_head.fc_coord.weight": torch.zeros(1)},
            "meta": {"epoch": 325}}
    # the ImageNet release: no prefix, no num_batches_tracked, a classification head
    imagenet = {**{k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
                **{k: torch.zeros(1) for k in ("incre_modules.0.0.conv1.weight", "downsamp_modules.0.0.bias",
                                               "final_layer.1.running_var", "classifier.weight")}}
    # DataParallel's 'module.' prefix
    parallel = {f"module.{k}": v for k, v in state.items()}
    for name, checkpoint in (("pose", pose), ("imagenet", imagenet), ("parallel", parallel)):
        torch.manual_seed(2)
        model = build_hrnet(width=8, pretrained=_save(tmp_path / f"{name}.pth", checkpoint))
        loaded = model.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(model(x), expected))


def test_load_errors_name_file_and_keys(tmp_path):
    torch.manual_seed(0)
    model = HRNet(width=8)
    state = model.state_dict()
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_mmpose_state_dict(model, str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="garbage.pth.*not a readable"):
        load_mmpose_state_dict(model, str(garbage))
    with pytest.raises(RuntimeError, match="tensor.pth.*no state dict"):
        load_mmpose_state_dict(model, _save(tmp_path / "tensor.pth", torch.zeros(3)))
    with pytest.raises(RuntimeError, match=r"w16.pth.*HRNet-W8: shape mismatch \['transition1.0.0.weight"):
        load_mmpose_state_dict(model, _save(tmp_path / "w16.pth", HRNet(width=16).state_dict()))
    # a single-output pose HRNet lacks the multi-scale fuse layers of the last stage-4 module
    single = HRNet(width=8, multiscale_output=False).state_dict()
    with pytest.raises(RuntimeError, match=r"single.pth.*missing \['stage4.2.fuse_layers.1.0.0.0.weight"):
        load_mmpose_state_dict(model, _save(tmp_path / "single.pth", single))
    extra = {**state, "stage5.0.weight": torch.zeros(1)}
    with pytest.raises(RuntimeError, match=r"extra.pth.*missing \[\], unexpected \['stage5.0.weight'\]"):
        load_mmpose_state_dict(model, _save(tmp_path / "extra.pth", extra))


# Parameter counts, derived independently of the module from the architecture (mmpose HRNet, BN = 2 per
# channel, convs without bias): stem, layer1, transitions, HRModules (branches + fuse layers).
def _conv(cin, cout, k, bias=False):
    return cin * cout * k * k + (cout if bias else 0)


def _bottleneck(cin, mid):
    n = _conv(cin, mid, 1) + _conv(mid, mid, 3) + _conv(mid, 4 * mid, 1) + 2 * (mid + mid + 4 * mid)
    return n + (_conv(cin, 4 * mid, 1) + 2 * 4 * mid if cin != 4 * mid else 0)


def _hr_module(ch, outputs):
    n = sum(4 * 2 * (_conv(c, c, 3) + 2 * c) for c in ch)
    for i in range(outputs):
        n += sum(_conv(ch[j], ch[i], 1) + 2 * ch[i] for j in range(i + 1, len(ch)))
        for j in range(i):
            n += (i - j - 1) * (_conv(ch[j], ch[j], 3) + 2 * ch[j]) + _conv(ch[j], ch[i], 3) + 2 * ch[i]
    return n


def _hrnet_count(w, multiscale):
    ch = [w, 2 * w, 4 * w, 8 * w]
    n = _conv(3, 64, 3) + _conv(64, 64, 3) + 4 * 64 + _bottleneck(64, 64) + 3 * _bottleneck(256, 64)
    n += _conv(256, w, 3) + 2 * w + _conv(256, 2 * w, 3) + 2 * 2 * w + _hr_module(ch[:2], 2)
    n += _conv(2 * w, 4 * w, 3) + 2 * 4 * w + 4 * _hr_module(ch[:3], 3)
    n += _conv(4 * w, 8 * w, 3) + 2 * 8 * w + 2 * _hr_module(ch, 4) + _hr_module(ch, 4 if multiscale else 1)
    return n


def _imagenet_head_count(w):
    """HRNet-W*-C's classification head (HRNet-Image-Classification): a Bottleneck per branch to
    (32, 64, 128, 256) x 4, 3x3 stride-2 convs with bias between them, 1x1 conv to 2048, fc to 1000."""
    head = [32, 64, 128, 256]
    n = sum(_bottleneck(w * 2**i, h) for i, h in enumerate(head))
    n += sum(_conv(4 * a, 4 * b, 3, bias=True) + 2 * 4 * b for a, b in zip(head, head[1:]))
    return n + _conv(1024, 2048, 1, bias=True) + 2 * 2048 + 2048 * 1000 + 1000


@pytest.mark.parametrize("width, multiscale, single, imagenet", [(32, 29_305_536, 28_535_552, 41.2e6),
                                                                 (48, 65_325_120, 63_594_912, 77.5e6)])
def test_parameter_counts(width, multiscale, single, imagenet):
    assert _num_params(_meta_hrnet(width=width)) == _hrnet_count(width, True) == multiscale  # spec 1.1 table
    assert _num_params(_meta_hrnet(width=width, multiscale_output=False)) == _hrnet_count(width, False) == single
    # the usual pose HRNet (single output + 1x1 conv to 17 heatmaps): 28.5 M / 63.6 M in the HRNet paper
    assert single + _conv(width, 17, 1, bias=True) == {32: 28_536_113, 48: 63_595_745}[width]
    # the multi-scale backbone + the ImageNet classifier = HRNet-W32-C 41.2 M / W48-C 77.5 M (published)
    assert multiscale + _imagenet_head_count(width) == pytest.approx(imagenet, rel=2e-3)


@pytest.mark.parametrize("width, total", [(32, 38_193_752), (48, 74_274_776)])
def test_poseur_total_from_backbone(width, total):
    """Poseur-HRNet 6 decoder layers (spec's parameter table): backbone + neck (1x1 convs to 256 without
    bias + GroupNorm) + transformer misc 154,692 + 6 x (decoder layer 1,020,544 + branches 396,294) + both
    RealNVP flows 107,568."""
    backbone = _meta_hrnet(width=width)
    neck = sum(c * 256 + 2 * 256 for c in backbone.num_channels)
    assert _num_params(backbone) + neck + 154_692 + 6 * (1_020_544 + 396_294) + 107_568 == total
