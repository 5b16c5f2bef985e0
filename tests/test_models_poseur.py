"""Poseur (posetr/models/poseur): parameter counts, shapes, the noisy query groups, grouped self-attention,
the reference refinement, initialisation, RealNVP and the RLE loss, flip fusion and scores, and the fused
EMSDA model against Poseur's own formulation (``ops: reference``)."""
import math

import pytest
import torch

from posetr.models import build_model
from posetr.models.poseur.config import PoseurConfig
from posetr.models.poseur.criterion import rle_loss
from posetr.models.poseur.model import NormLinear
from posetr.models.poseur.noisy_queries import noisy_references
from posetr.models.poseur.postprocess import fuse_flip, type2_confidence
from posetr.models.poseur.realnvp import RealNVP
from posetr.ops import EMSDeformAttn


def _count(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def _tiny_cfg(**overrides) -> PoseurConfig:
    fields = dict(backbone_depth=18, backbone_width=16, backbone_norm="group", backbone_init="scratch", d_model=64,
                  n_heads=4, dim_feedforward=64, dec_layers=2, dropout=0.0)
    fields.update(overrides)
    return PoseurConfig(**fields)


def _crops(batch=2, size=(64, 48), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *size, generator=g), torch.zeros(batch, *size, dtype=torch.bool)


def _targets(batch, K=17, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"keypoints": torch.cat([torch.rand(K, 2, generator=g), torch.full((K, 1), 2.0)], 1),
             "target_weight": torch.ones(K), "image_id": i} for i in range(batch)]


@pytest.mark.parametrize("overrides, expected", [
    (dict(dec_layers=6), 33_256_408),  # the released Poseur-R50 (spec: 33.256 M with both flows)
    (dict(dec_layers=3), 29_005_894),  # paper Table 1d, 29.0 M
    (dict(dec_layers=3, levels="C5"), 28_322_790),  # Table 1d's level ablation: 28.3 M
    (dict(dec_layers=3, levels="C4-C5"), 28_659_718),  # 28.7 M
    (dict(dec_layers=3, levels="C3-C5"), 28_865_574),  # 28.9 M
    (dict(backbone="mobilenetv2"), 11_355_800),
    (dict(backbone="mobilenetv2", dec_layers=12), 19_856_828),
    (dict(backbone="hrnet", backbone_width=32), 38_193_752),
    (dict(backbone="hrnet", backbone_width=48), 74_274_776),
])
def test_parameter_counts(overrides, expected):
    model, criterion, _ = build_model(PoseurConfig(backbone_init="scratch", **overrides))
    assert _count(model, criterion) == expected
    assert _count(criterion) == 2 * 53_784  # the two RealNVP flows (training only)


def test_submodule_parameter_counts():
    model, _, _ = build_model(PoseurConfig(backbone_init="scratch", dec_layers=1))
    layer = model.decoder.layers[0]
    assert _count(layer) == 1_020_544
    assert _count(layer.self_attn) == 263_168 and _count(layer.cross_attn) == 230_272
    assert _count(layer.ffn) == 525_568 + 512  # FFN and its LayerNorm
    assert [_count(b[0]) for b in (model.decoder.coord_branches, model.decoder.coord_output_branches,
                                   model.decoder.sigma_branches)] == [132_098] * 3
    assert _count(model.neck) == 985_088 and _count(model.backbone) == 23_508_032
    assert _count(RealNVP()) == 53_784


def test_shapes_r50_train_and_eval():
    """Spec section 1.8 at 256x192: 4080 memory tokens, 68 training queries, 17 at test."""
    model, _, _ = build_model(PoseurConfig(backbone_init="scratch", dec_layers=2))
    images, masks = _crops(batch=1, size=(256, 192))
    memory, shapes, starts, pooled = model.encode(images, masks)
    assert memory.shape == (1, 4080, 256) and shapes.tolist() == [[64, 48], [32, 24], [16, 12], [8, 6]]
    assert pooled.shape == (1, 256)
    model.train()
    out = model(images, masks)
    assert out["dec_keypoints"].shape == (2, 1, 68, 2) and out["dec_sigma"].shape == (2, 1, 68, 2)
    assert out["pred_keypoints"].shape == (1, 17, 2) and out["coarse_sigma"].shape == (1, 17, 2)
    model.eval()
    with torch.no_grad():
        out = model(images, masks)
    assert out["dec_keypoints"].shape == (2, 1, 17, 2) and out["input_size"] == (256, 192)
    assert ((out["pred_sigma"] > 0) & (out["pred_sigma"] < 1)).all()


def test_noisy_references_follow_the_official_sampling():
    torch.manual_seed(0)
    reference = torch.rand(5, 17, 2)
    out = noisy_references(reference, num_groups=3, num_points=4, sigma=0.2)
    assert out.shape == (5, 68, 2) and torch.equal(out[:, :17], reference)
    copies = reference.repeat(1, 3, 1)
    changed = (out[:, 17:] != copies).any(-1)  # [B, 51]
    assert changed.sum(1).tolist() == [12] * 5  # 12 of 51 slots
    assert (changed == changed[0]).all()  # the same slots for every crop of the batch
    assert out.min() >= -0.7 and out.max() <= 1.7
    assert ((out[:, 17:] - copies).abs() <= 1 + 1e-6).all()  # offsets clipped to +-1
    big = noisy_references(torch.full((4000, 17, 2), 0.5), num_groups=3, num_points=4, sigma=0.2)
    offsets = big[:, 17:] - 0.5
    offsets = offsets[:, (offsets != 0).any(-1).any(0)]
    assert offsets.shape[1] == 12
    # covariance 0.2 I: std 0.447 per axis, 2.5 % of the offsets clipped at +-1 (std 0.436)
    assert offsets.std().item() == pytest.approx(0.436, abs=0.01)


def test_noise_groups_never_reach_the_clean_group():
    """Self-attention runs within each group of K and EMSDA / FFN per query, so without dropout the clean
    group's training outputs are the eval outputs."""
    torch.manual_seed(0)
    model, _, _ = build_model(_tiny_cfg())
    images, masks = _crops()
    model.train()
    trained = model(images, masks)
    model.eval()
    with torch.no_grad():
        evaluated = model(images, masks)
    assert trained["dec_keypoints"].shape[2] == 68
    torch.testing.assert_close(trained["dec_keypoints"][:, :, :17], evaluated["dec_keypoints"])
    torch.testing.assert_close(trained["pred_sigma"], evaluated["pred_sigma"])


def test_references_refine_without_detach_and_the_coarse_reference_is_detached():
    torch.manual_seed(0)
    model, _, _ = build_model(_tiny_cfg())
    model.eval()
    out = model(*_crops())
    out["dec_keypoints"][1].sum().backward()  # layer 1's output only
    assert model.decoder.coord_branches[0][0].weight.grad.abs().sum() > 0  # through r_1, not detached
    assert model.fc_coord.linear.weight.grad is None  # r_0 = mu_f.detach()
    assert model.query_proj.weight.grad.abs().sum() > 0


def test_official_and_deformable_detr_initialisation():
    torch.manual_seed(0)
    official, _, _ = build_model(_tiny_cfg(d_model=256, n_heads=8, dim_feedforward=1024))
    attn = official.decoder.layers[0].cross_attn
    assert attn.sampling_offsets.weight.abs().max() > 0.05  # Xavier over the intended zeros
    bound = math.sqrt(6 / (32 + 2048))  # the official (2048, 32) table's Xavier bound
    assert bound * 0.95 < attn.value_proj.weight.abs().max() <= bound
    assert attn.value_proj.bias.abs().max() > 0.2  # its (8, 32) bias table: bound 0.387
    grid = attn.sampling_offsets.bias.view(8, 4, 4, 2)
    assert grid[0, 0, :, 0].tolist() == [1, 2, 3, 4] and grid[1, 0, 0].tolist() == [1, 1]
    assert torch.equal(attn.attention_weights.bias, torch.zeros_like(attn.attention_weights.bias))
    assert official.fc_coord.linear.weight.abs().max() > 0.05  # gain 1 overwrites the intended 0.01
    assert official.decoder.coord_branches[0][0].weight.abs().max() < 0.01 * math.sqrt(6 / 512) + 1e-7
    torch.manual_seed(0)
    intended, _, _ = build_model(_tiny_cfg(d_model=256, n_heads=8, dim_feedforward=1024, init="deformable_detr"))
    attn = intended.decoder.layers[0].cross_attn
    assert attn.sampling_offsets.weight.abs().max() == 0 and attn.attention_weights.weight.abs().max() == 0
    assert attn.value_proj.bias.abs().max() == 0
    assert intended.fc_coord.linear.weight.abs().max() < 0.01 * math.sqrt(6 / (256 + 34)) + 1e-7


def test_norm_linear_divides_by_the_feature_norm():
    layer = NormLinear(8, 3)
    x = torch.randn(4, 8)
    expected = x @ layer.linear.weight.t() / x.norm(dim=1, keepdim=True) + layer.linear.bias
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer(5 * x), expected)  # scale-invariant but for the bias


def _identity_flow() -> RealNVP:
    flow = RealNVP().double()
    for nets in (flow.s, flow.t):
        for net in nets:
            torch.nn.init.zeros_(net[4].weight)
            torch.nn.init.zeros_(net[4].bias)
    return flow


def test_rle_sanity_value():
    """Identity flow, zero error, sigma 1, weight 1: 6.013631 per keypoint (spec section 4.2)."""
    flow = _identity_flow()
    assert flow.log_prob(torch.zeros(1, 2, dtype=torch.float64)).item() == pytest.approx(-2.087877, abs=1e-6)
    B, Q = 3, 17
    mu = torch.rand(B, Q, 2, dtype=torch.float64)
    ones = torch.ones(B, Q, 2, dtype=torch.float64)
    per_query = rle_loss(flow, mu, ones, mu, ones, normalize="queries")
    assert per_query.item() == pytest.approx(6.013631, abs=1e-6)
    assert rle_loss(flow, mu, ones, mu, ones, normalize="batch").item() == pytest.approx(Q * 6.013631, abs=1e-5)
    zero = torch.zeros_like(ones)
    assert rle_loss(flow, mu, ones, mu, zero, normalize="batch").item() == 0  # all weights 0: the plain sum


def test_rle_loss_terms_against_the_formula():
    torch.manual_seed(0)
    flow = RealNVP().double()
    B, Q = 2, 5
    mu, target = torch.rand(B, Q, 2, dtype=torch.float64), torch.rand(B, Q, 2, dtype=torch.float64)
    sigma = torch.rand(B, Q, 2, dtype=torch.float64) * 0.9 + 0.05
    weight = (torch.rand(B, Q, 1) > 0.3).double().expand(B, Q, 2)
    log_phi = flow.log_prob(((mu - target) / sigma).reshape(-1, 2)).view(B, Q, 1)
    expected = ((sigma.log() - log_phi) * weight
                + (torch.log(math.sqrt(2 * math.pi) * sigma) + (mu - target).abs() / (math.sqrt(2) * sigma + 1e-9))
                * weight).sum() / B
    torch.testing.assert_close(rle_loss(flow, mu, sigma, target, weight, normalize="batch"), expected)


def test_realnvp_gradcheck_inverse_and_log_determinant():
    torch.manual_seed(0)
    flow = RealNVP().double()
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(flow.log_prob, (x,))
    z, log_det = flow.inverse(x)
    torch.testing.assert_close(flow.forward_pass(z), x)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda p: flow.inverse(p[None])[0][0], x[i].detach())
        assert log_det[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-10)


def test_criterion_losses_and_weights():
    torch.manual_seed(0)
    model, criterion, _ = build_model(_tiny_cfg())
    model.train()
    out = model(*_crops())
    losses = criterion(out, _targets(2))
    assert set(losses) == set(criterion.weight_dict) == {"enc_rle_loss", "dec_rle_loss_0", "dec_rle_loss_1"}
    sum(losses.values()).backward()
    assert criterion.enc_flow.s[0][0].weight.grad.abs().sum() > 0
    assert criterion.dec_flow.t[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="target 0 .*expected keypoints \\[17, 3\\]"):
        criterion(out, [{"keypoints": torch.zeros(16, 3), "target_weight": torch.ones(16)}] * 2)


def test_type2_confidence_and_flip_fusions():
    sigma = torch.full((1, 1, 2), 0.1)
    assert type2_confidence(sigma).item() == pytest.approx(0.7 * (1 - math.exp(-2)) ** 2)
    assert type2_confidence(sigma).item() == pytest.approx(0.523352, abs=1e-6)
    a, b = torch.tensor([[[0.2, 0.4]]]), torch.tensor([[[0.4, 0.6]]])
    s_a, s_b = torch.tensor([[[0.1, 0.1]]]), torch.tensor([[[0.3, 0.5]]])
    fused, score = fuse_flip(a, s_a, b, s_b, fusion="default")
    torch.testing.assert_close(fused, torch.tensor([[[0.3, 0.5]]]))
    assert score.item() == pytest.approx(((0.9 + 0.9) / 2 + (0.7 + 0.5) / 2) / 2)
    fused, score = fuse_flip(a, s_a, b, s_b, fusion="type2")
    p_a, p_b = type2_confidence(s_a), type2_confidence(s_b)
    torch.testing.assert_close(fused, (a * p_a[..., None] ** 5 + b * p_b[..., None] ** 5)
                               / (p_a[..., None] ** 5 + p_b[..., None] ** 5 + 1e-10))
    assert score.item() == pytest.approx(((p_a + p_b) / 2).item())
    assert fused[0, 0, 0] < 0.25  # the sharper view dominates


def test_postprocess_scores_and_unit_flip():
    _, _, post = build_model(_tiny_cfg())
    K = 17
    keypoints = torch.rand(1, K, 2)
    sigma = torch.rand(1, K, 2) * 0.5
    targets = [{"center": torch.tensor([100.0, 100.0]), "scale": torch.tensor([1.0, 4 / 3]), "bbox_score": 0.8}]
    outputs = {"pred_keypoints": keypoints, "pred_sigma": sigma, "input_size": (64, 48)}
    result = post(outputs, targets)[0]
    scores = (1 - sigma[0]).mean(-1)
    torch.testing.assert_close(result["keypoints"][:, 2], scores)
    assert result["score"] == pytest.approx(0.8 + scores.mean().item() + scores.max().item())
    flip_index = post.flip_index
    mirrored = {"pred_keypoints": torch.stack([1 - keypoints[..., 0], keypoints[..., 1]], -1)[:, flip_index],
                "pred_sigma": sigma[:, flip_index], "input_size": (64, 48)}
    fused = post(outputs, targets, flipped_outputs=mirrored)[0]  # the exact mirror under x -> 1 - x
    torch.testing.assert_close(fused["keypoints"], result["keypoints"])


@pytest.mark.parametrize("training", [False, True])
def test_fused_emsda_matches_poseurs_formulation(training):
    """``ops: reference`` (value repeated per head + MSDA + per-head projection) on the same weights: the same
    outputs, losses and gradients."""
    outs, grads = [], []
    for ops in ("posetr", "reference"):
        torch.manual_seed(0)
        model, criterion, _ = build_model(_tiny_cfg(ops=ops))
        model.double().train(training)
        criterion.double()
        images, masks = _crops()
        torch.manual_seed(1)  # the same noisy groups
        out = model(images.double(), masks)
        loss = sum(criterion(out, _targets(2)).values())
        loss.backward()
        outs.append(out["dec_keypoints"].detach())
        grads.append(model.decoder.layers[0].cross_attn.value_proj.weight.grad.clone())
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_invalid_fields_are_named():
    for field, value in (("init", "paper"), ("flip_fuse", "type9"), ("rle_normalize", "keypoints"),
                         ("backbone", "vit"), ("flip_convention", "left"), ("levels", "C2-C4")):
        with pytest.raises(ValueError, match=f"model.{field} must be one of"):
            build_model(_tiny_cfg(**{field: value}))
    with pytest.raises(ValueError, match="model.levels must be 'C2-C5' with backbone hrnet"):
        build_model(_tiny_cfg(backbone="hrnet", levels="C5"))
    with pytest.raises(ValueError, match="model.levels must be 'C2-C5' with backbone mobilenetv2"):
        build_model(_tiny_cfg(backbone="mobilenetv2", levels="C5"))
    with pytest.raises(ValueError, match="model.d_model must be a multiple of 32"):
        build_model(_tiny_cfg(d_model=48))


def test_emsda_module_is_the_cross_attention():
    model, _, _ = build_model(_tiny_cfg())
    assert all(isinstance(layer.cross_attn, EMSDeformAttn) for layer in model.decoder.layers)


# ---- official checkpoints ----

def _official_state(model, criterion, cfg) -> dict:
    """A random state dict with the official key names and shapes of ``cfg``'s model (written from the official
    module structure: mmcv MultiheadAttention's ``attn``, ``FFN.layers``, EMSDA's Embedding tables, the head's
    branches and flows), the backbone's and neck's keys as posetr has them."""
    g = torch.Generator().manual_seed(3)
    C, K, M, F = cfg.d_model, cfg.num_keypoints, cfg.n_heads, cfg.dim_feedforward
    L, P = 4, cfg.n_points
    shapes = {"transformer.level_embeds": (L, C), "transformer.fc_coord.linear.weight": (2 * K, C),
              "transformer.fc_coord.linear.bias": (2 * K,), "transformer.fc_sigma.linear.weight": (2 * K, C),
              "transformer.fc_sigma.linear.bias": (2 * K,), "transformer.pos_trans.weight": (C, 2 * C),
              "transformer.pos_trans.bias": (C,), "transformer.pos_trans_norm.weight": (C,),
              "transformer.pos_trans_norm.bias": (C,), "transformer.pos_embed.weight": (K, C)}
    for l in range(cfg.dec_layers):
        layer = f"transformer.decoder.layers.{l}."
        shapes.update({
            layer + "attentions.0.attn.in_proj_weight": (3 * C, C), layer + "attentions.0.attn.in_proj_bias": (3 * C,),
            layer + "attentions.0.attn.out_proj.weight": (C, C), layer + "attentions.0.attn.out_proj.bias": (C,),
            layer + "attentions.1.sampling_offsets.weight": (M * L * P * 2, C),
            layer + "attentions.1.sampling_offsets.bias": (M * L * P * 2,),
            layer + "attentions.1.attention_weights.weight": (M * L * P, C),
            layer + "attentions.1.attention_weights.bias": (M * L * P,),
            layer + "attentions.1.output_proj.weight": (C, C), layer + "attentions.1.output_proj.bias": (C,),
            layer + "attentions.1.value_proj_weight.weight": (M * C, C // M),
            layer + "attentions.1.value_proj_bias.weight": (M, C // M),
            layer + "ffns.0.layers.0.0.weight": (F, C), layer + "ffns.0.layers.0.0.bias": (F,),
            layer + "ffns.0.layers.1.weight": (C, F), layer + "ffns.0.layers.1.bias": (C,),
            **{layer + f"norms.{n}.{w}": (C,) for n in range(3) for w in ("weight", "bias")}})
        for branch in ("fc_coord_branches", "fc_coord_output_branches"):
            for i, (o, n) in zip((0, 2, 4), ((C, C), (C, C), (2, C))):
                shapes[f"{branch}.{l}.{i}.weight"], shapes[f"{branch}.{l}.{i}.bias"] = (o, n), (o,)
        for i in (0, 1):
            shapes[f"fc_sigma_branches.{l}.{i}.weight"], shapes[f"fc_sigma_branches.{l}.{i}.bias"] = (C, C), (C,)
        shapes[f"fc_sigma_branches.{l}.2.linear.weight"], shapes[f"fc_sigma_branches.{l}.2.linear.bias"] = (2, C), (2,)
    state = {f"keypoint_head.{k}": torch.randn(*v, generator=g) * 0.05 for k, v in shapes.items()}
    for k, v in criterion.state_dict().items():
        state[f"keypoint_head.{k}"] = v if k.endswith("mask") else torch.randn(v.shape, generator=g) * 0.05
    state.update({k: v for k, v in model.state_dict().items() if k.startswith(("backbone.", "neck."))})
    return state


def test_official_checkpoint_converts_key_for_key_and_projects_like_the_official_emsda():
    from posetr.models.poseur.official import convert_state_dict
    from posetr.ops.emsda import emsda_sample

    cfg = _tiny_cfg(d_model=64, n_heads=8)
    model, criterion, _ = build_model(cfg)
    official = _official_state(model, criterion, cfg)
    model_state, criterion_state = convert_state_dict(official, num_heads=8)
    model.load_state_dict(model_state)  # strict: every key of posetr's model is covered, none left over
    criterion.load_state_dict(criterion_state)
    attn = model.decoder.layers[1].cross_attn
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[8, 6], [4, 3], [2, 2], [1, 1]])
    starts = torch.tensor([0, 48, 60, 64])
    value = torch.randn(2, 65, 64, generator=g)
    query = torch.randn(2, 5, 64, generator=g)
    reference = torch.rand(2, 5, 2, generator=g)
    ours = attn(query, reference, value, shapes, starts)
    # the official forward: offsets / weights as posetr's (same Linear layers), then its einsum on the tables
    offsets = attn.sampling_offsets(query).view(2, 5, 8, 4, 4, 2)
    weights = attn.attention_weights(query).view(2, 5, 8, 16).softmax(-1).view(2, 5, 8, 4, 4)
    locations = reference[:, :, None, None, None] + offsets / shapes.flip(-1)[None, None, None, :, None].float()
    sampled = emsda_sample(value, shapes, starts, locations, weights)  # [B, Q, M, C]
    layer = "keypoint_head.transformer.decoder.layers.1.attentions.1."
    table = official[layer + "value_proj_weight.weight"].reshape(8, 64, 8)
    projected = torch.einsum("bqhc,hco->bqho", sampled, table) + official[layer + "value_proj_bias.weight"]
    torch.testing.assert_close(ours, attn.output_proj(projected.flatten(-2)))


def test_official_checkpoint_cli_and_errors(tmp_path):
    import yaml

    from posetr.engine.checkpoint import load_checkpoint
    from posetr.errors import CheckpointError
    from posetr.models.poseur.official import convert_state_dict, main

    cfg = _tiny_cfg()
    model, criterion, _ = build_model(cfg)
    official = _official_state(model, criterion, cfg)
    path = tmp_path / "official.pth"
    torch.save({"meta": {"epoch": 325, "mmpose_version": "0.24.0"}, "state_dict": official}, path)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"model": {k: getattr(cfg, k) for k in (
        "name", "backbone_depth", "backbone_width", "backbone_norm", "backbone_init", "d_model", "n_heads",
        "dim_feedforward", "dec_layers", "dropout")}}))
    assert main([str(path), str(tmp_path / "posetr.pth"), "--config", str(config)]) == 0
    loaded, _, _ = build_model(cfg)
    load_checkpoint(str(tmp_path / "posetr.pth"), model=loaded)
    expected, _ = convert_state_dict(official, num_heads=cfg.n_heads)
    for k, v in expected.items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with pytest.raises(CheckpointError, match="keys posetr does not map"):
        convert_state_dict({**official, "keypoint_head.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no 'keypoint_head.' keys"):
        convert_state_dict({"backbone.conv1.weight": torch.zeros(1)})
    assert main([str(tmp_path / "missing.pth"), str(tmp_path / "x.pth"), "--config", str(config)]) == 1


@pytest.mark.cuda
def test_cuda_matches_cpu():
    """The same Poseur (fused EMSDA on the CUDA kernel) on the GPU: outputs, losses and gradients as on the CPU
    (float64, eval mode so no random noisy groups)."""
    torch.manual_seed(0)
    model, criterion, _ = build_model(_tiny_cfg())
    results = []
    for device in ("cpu", "cuda"):
        model.to(device).double().eval()
        criterion.to(device).double()
        model.zero_grad(set_to_none=True)
        images, masks = _crops()
        out = model(images.double().to(device), masks.to(device))
        targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in _targets(2)]
        sum(criterion(out, targets).values()).backward()
        results.append((out["dec_keypoints"].detach().cpu(), out["dec_sigma"].detach().cpu(),
                        model.decoder.layers[0].cross_attn.sampling_offsets.weight.grad.cpu()))
    for cpu, cuda in zip(*results):
        torch.testing.assert_close(cpu, cuda)


@pytest.mark.parametrize("dec_layers, size, paper", [(3, (256, 192), 4.48), (6, (256, 192), 4.57),
                                                     (3, (128, 128), 1.55)])
def test_gmacs_fit_the_paper(dec_layers, size, paper):
    """GMACs (FlopCounterMode FLOPs / 2, batch 1, eval) of Poseur-R50 beside Tables 1e / 2b: 4.455, 4.527 and
    1.535 here (the spec's mmcv-style estimate: 4.473, 4.528, 1.529)."""
    from posetr.models.common.flops import count_flops

    model = build_model(PoseurConfig(backbone_init="scratch", dec_layers=dec_layers))[0].eval()
    gmacs = count_flops(model, torch.randn(1, 3, *size), torch.zeros(1, *size, dtype=torch.bool)) / 2e9
    assert gmacs == pytest.approx(paper, rel=0.015)


def test_hrnet_poseur_trains_a_step():
    """Poseur on the HRNet backbone (its 4 stage-4 branches as the levels), at a tiny width."""
    torch.manual_seed(0)
    model, criterion, _ = build_model(_tiny_cfg(backbone="hrnet", backbone_width=8, backbone_norm="group"))
    assert model.backbone.num_channels == [8, 16, 32, 64]
    model.train()
    out = model(*_crops(size=(64, 64)))  # HRNet takes multiples of 32
    assert out["dec_keypoints"].shape == (2, 2, 68, 2)
    sum(criterion(out, _targets(2)).values()).backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_mobilenet_v2_levels_and_names():
    """MobileNetV2 x1.0 (mmcls names): 2,223,872 parameters, outputs of 24 / 32 / 96 / 1280 channels at
    strides 4 / 8 / 16 / 32."""
    from posetr.models.common.mobilenet_v2 import MobileNetV2

    net = MobileNetV2()
    assert _count(net) == 2_223_872
    features = net(torch.randn(1, 3, 256, 192))
    assert [tuple(f.shape[1:]) for f in features] == [(24, 64, 48), (32, 32, 24), (96, 16, 12), (1280, 8, 6)]
    keys = set(net.state_dict())
    assert {"conv1.conv.weight", "conv1.bn.running_mean", "layer1.0.conv.0.conv.weight", "layer2.0.conv.2.bn.weight",
            "layer7.0.conv.1.conv.weight", "conv2.conv.weight"} <= keys
    assert "layer1.0.conv.2.conv.weight" not in keys  # expand ratio 1: no expansion conv


def test_mobilenet_v2_loads_an_mmcls_checkpoint(tmp_path):
    from posetr.models.common.mobilenet_v2 import MobileNetV2, build_mobilenet_v2

    torch.manual_seed(1)
    source = MobileNetV2().state_dict()
    state = {f"backbone.{k}": v for k, v in source.items()}
    state["head.fc.weight"] = torch.zeros(1000, 1280)  # mmcls's classifier: not part of the backbone
    torch.save({"meta": {"epoch": 300}, "state_dict": state}, tmp_path / "mobilenet_v2.pth")
    loaded = build_mobilenet_v2(pretrained=str(tmp_path / "mobilenet_v2.pth")).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.items())
    torch.save({"state_dict": {"backbone.conv1.conv.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="does not fit MobileNetV2"):
        build_mobilenet_v2(pretrained=str(tmp_path / "bad.pth"))
