"""PETR's official initialisation and heatmap encoder (opera ``PETRTransformer``), each behind a switch, and
the official parameter count."""
import math

import pytest
import torch

from posetr.models import build_model
from posetr.models.petr import PETRConfig
from test_models_petr import make_batch, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def test_defaults_are_official_and_keep_the_parameter_count():
    cfg = PETRConfig()
    assert cfg.transformer_init == "xavier" and cfg.heatmap_pos_embed is False
    model, _, _ = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == 43_579_617  # ../shared/specs/petr_review.md section 3


def _bound_ratio(weight):
    """max |w| over the Xavier-uniform bound sqrt(6 / (fan_in + fan_out)); PyTorch's Linear default
    (kaiming_uniform a=sqrt(5)) has bound 1 / sqrt(fan_in)."""
    fan_out, fan_in = weight.shape
    return weight.abs().max().item() / math.sqrt(6.0 / (fan_in + fan_out))


def _build(**overrides):
    torch.manual_seed(0)
    return build_model(tiny_config(d_model=32, dim_feedforward=256, **overrides))[0]


def test_xavier_init_reaches_every_transformer_matrix_and_nothing_else():
    xavier, default = _build(transformer_init="xavier"), _build(transformer_init="pytorch")
    # FFN 32 -> 256: Xavier bound 0.144, PyTorch's 1 / sqrt(32) = 0.177
    transformer = {
        "encoder FFN": lambda m: m.encoder.layers[0].ffn.linear1.weight,
        "pose decoder FFN": lambda m: m.pose_decoder.layers[1].ffn.linear1.weight,
        "pose decoder MHA out": lambda m: m.pose_decoder.layers[0].self_attn.out_proj.weight,
        "joint decoder FFN": lambda m: m.joint_decoder.layers[0].ffn.linear1.weight,
        "heatmap encoder FFN": lambda m: m.heatmap_head.encoder.ffn.linear1.weight,
        "proposal Linear": lambda m: m.proposal_head.output.weight,
    }
    for name, get in transformer.items():
        assert 0.95 < _bound_ratio(get(xavier)) <= 1.0, name
        if get(default).shape[1] == 32 and get(default).shape[0] == 256:
            assert _bound_ratio(get(default)) > 1.05, name
        assert not torch.equal(get(xavier), get(default)), name
    # deformable attentions keep their own initialisation (zero offsets / uniform weights)
    for model in (xavier, default):
        attn = model.pose_decoder.layers[0].cross_attn
        assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
        assert torch.count_nonzero(attn.sampling_offsets.bias) == 0
        enc = model.encoder.layers[0].self_attn
        assert torch.count_nonzero(enc.attention_weights.weight) == 0 and enc.sampling_offsets.bias.abs().max() > 0
    # backbone, neck, embeddings and heads are untouched (same seed, same draws before the re-init)
    names = [n for n, _ in xavier.named_parameters()
             if n.startswith(("backbone.", "input_proj.", "query_embedding.", "level_embed.",
                              "joint_decoder.query_embedding"))
             or ".class_head" in n or "kpt_head" in n or n.startswith("heatmap_head.fc.")]
    assert names
    default_params = dict(default.named_parameters())
    assert all(torch.equal(p, default_params[n]) for n, p in xavier.named_parameters() if n in names)


@pytest.mark.parametrize("pos_embed", [False, True])
def test_heatmap_encoder_positional_embedding_switch(pos_embed):
    model = _build(heatmap_pos_embed=pos_embed)
    model.train()
    seen = {}
    model.heatmap_head.register_forward_pre_hook(lambda module, args: seen.update(pos=args[1]))
    images, masks, _ = make_batch()
    model(images, masks)
    assert bool(seen["pos"].abs().sum() > 0) == pos_embed  # the official branch gets no positional embedding
