"""POET: parameter counts, DETR transformer, target codec, matcher vs brute force + scipy, losses,
postprocess, and a short training run."""
import dataclasses
import math
import os

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from conftest import devices
from posetr.config import load_config
from posetr.models import build_model
from posetr.models.common.kernels import get_kernels
from posetr.models.poet import POETConfig
from posetr.models.poet.codec import batch_targets, decode_keypoints, encode_targets, split_prediction
from posetr.models.poet.matcher import POETMatcher
from posetr.models.poet.transformer import Transformer, TransformerDecoderLayer, TransformerEncoderLayer
from posetr.profile.poet_match import WEIGHTS, official_loop_match, random_inputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models are latency-bound; one thread avoids OpenMP spin-waiting on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides):
    cfg = POETConfig(backbone_depth=18, backbone_width=8, backbone_norm="group", train_stem=True, d_model=32,
                     n_heads=4, enc_layers=1, dec_layers=3, dim_feedforward=64, dropout=0.0, num_queries=12)
    return dataclasses.replace(cfg, **overrides)


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_target(num_people, h=64, w=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(num_people, 1, 2, generator=g) * 0.5 + 0.25
    xy = (centre + (torch.rand(num_people, 17, 2, generator=g) - 0.5) * 0.3).clamp(0.02, 0.98)
    v = torch.full((num_people, 17, 1), 2.0)
    if num_people:
        v[0, :4] = 0  # unlabelled joints
        v[0, 4:6] = 1  # occluded joints (invisible for POET's official remap)
    return {"keypoints": torch.cat([xy, v], -1), "area": torch.full((num_people,), 500.0),
            "labels": torch.zeros(num_people, dtype=torch.long), "size": torch.tensor([h, w]),
            "orig_size": torch.tensor([2 * h, 2 * w]), "image_id": seed}


def encode_batch(targets, cfg=None, device="cpu", dtype=torch.float32):
    cfg = cfg or POETConfig()
    return batch_targets(targets, num_keypoints=17, visible_threshold=cfg.visible_threshold,
                         class_head=cfg.class_head, device=device, dtype=dtype)


def perfect_outputs(targets, num_queries, *, layers=1, person_logit=20.0):
    """Outputs whose first G_b queries equal image b's people (pose vectors from the codec, logits on
    the person's class), the other queries no-object."""
    batch = encode_batch(targets)
    B, G = batch.labels.shape
    p = batch.poses
    joints = torch.cat([p.offsets, p.visible[..., None]], -1).flatten(-2)
    pose = torch.full((B, num_queries, 53), 0.5)
    pose[:, :G] = torch.cat([p.center, joints], -1)
    logits = torch.zeros(B, num_queries, 3)
    logits[..., 2] = person_logit
    for b, n in enumerate(batch.sizes):
        logits[b, :n, 2] = 0
        logits[b, torch.arange(n), batch.labels[b, :n]] = person_logit
    out = {"pred_logits": logits, "pred_kpts": pose}
    out["aux_outputs"] = [dict(out) for _ in range(layers - 1)]
    return out


# ---- parameter counts (the official code's, spec section 10) ----

def test_readme_config_has_the_official_parameter_count():
    cfg = load_config(os.path.join(REPO, "configs", "poet_r50_coco.yaml")).model
    assert cfg.num_queries == 50
    model = build_model(cfg)[0]
    assert trainable(model) == 41_279_288
    assert sum(p.numel() for p in model.transformer.parameters()) == 17_363_456
    assert trainable(model.backbone) == 23_232_512  # layer2-4 convs; conv1 + layer1 frozen, FrozenBN buffers
    assert sum(p.numel() for p in model.kpt_embed.parameters()) == 145_205
    assert sum(p.numel() for p in model.class_embed.parameters()) == 771
    assert sum(p.numel() for p in model.input_proj.parameters()) == 524_544
    paper = load_config(os.path.join(REPO, "configs", "poet_r50_coco_paper.yaml")).model
    assert paper.num_queries == 25 and trainable(build_model(paper)[0]) == 41_272_888


# ---- transformer ----

def test_detr_layers_are_torch_post_norm_layers_without_positions():
    """With zero positional encodings DETR's layers are PyTorch's post-norm layers (same parameter names)."""
    torch.manual_seed(0)
    enc = TransformerEncoderLayer(d_model=32, n_heads=4, dim_feedforward=64, dropout=0.0)
    dec = TransformerDecoderLayer(d_model=32, n_heads=4, dim_feedforward=64, dropout=0.0)
    ref_enc = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0)
    ref_dec = torch.nn.TransformerDecoderLayer(32, 4, 64, dropout=0.0)
    ref_enc.load_state_dict(enc.state_dict())
    ref_dec.load_state_dict(dec.state_dict())
    src, tgt = torch.randn(10, 2, 32), torch.randn(5, 2, 32)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[1, 7:] = True
    torch.testing.assert_close(enc(src, mask, torch.zeros_like(src)), ref_enc(src, src_key_padding_mask=mask))
    torch.testing.assert_close(dec(tgt, src, mask, torch.zeros_like(src), torch.zeros_like(tgt)),
                               ref_dec(tgt, src, memory_key_padding_mask=mask))


def test_transformer_init_shapes_and_final_norm_on_every_layer():
    torch.manual_seed(0)
    t = Transformer(d_model=32, n_heads=4, enc_layers=2, dec_layers=3, dim_feedforward=64, dropout=0.0)
    for name, p in t.named_parameters():
        if p.dim() > 1:  # Xavier-uniform, in_proj_weight as one [3C, C] matrix (DETR's _reset_parameters)
            bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
            assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound, name
    assert all(torch.all(layer.self_attn.in_proj_bias == 0) for layer in t.encoder.layers)
    src, pos = torch.randn(2, 32, 3, 4), torch.randn(2, 32, 3, 4)
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    hs = t(src, mask, torch.randn(6, 32), pos)
    assert hs.shape == (3, 2, 6, 32)
    torch.testing.assert_close(hs.mean(-1), torch.zeros(3, 2, 6), atol=1e-5, rtol=0)  # LayerNorm'd outputs


def test_forward_shapes_sigmoid_and_aux_outputs():
    torch.manual_seed(0)
    model, criterion, _ = build_model(tiny_config())
    images = torch.randn(2, 3, 70, 100)
    masks = torch.zeros(2, 70, 100, dtype=torch.bool)
    masks[1, :, 60:] = True
    out = model(images, masks)
    assert out["pred_logits"].shape == (2, 12, 3) and out["pred_kpts"].shape == (2, 12, 53)
    assert out["pred_keypoints"].shape == (2, 12, 17, 2)
    assert 0 < out["pred_kpts"].min() and out["pred_kpts"].max() < 1
    assert len(out["aux_outputs"]) == 2 and out["aux_outputs"][0]["pred_kpts"].shape == (2, 12, 53)
    center, offsets, _ = split_prediction(out["pred_kpts"])
    torch.testing.assert_close(out["pred_keypoints"], center[:, :, None] + 2 * (offsets - 0.5))
    assert len(criterion.weight_dict) == 5 * 3
    assert model.backbone(images)[-1].shape[-2:] == (math.ceil(70 / 32), math.ceil(100 / 32))
    dc5 = build_model(tiny_config(dilation=True))[0]
    assert dc5.backbone(images)[-1].shape[-2:] == (math.ceil(70 / 16), math.ceil(100 / 16))
    assert trainable(dc5) == trainable(model)


# ---- target codec ----

def test_codec_round_trip_centre_of_mass_and_empty_people():
    t = make_target(3)
    kp = t["keypoints"]
    enc = encode_targets(kp, visible_threshold=2)
    visible = kp[..., 2] == 2
    torch.testing.assert_close(enc.visible, visible.float())
    for g in range(3):
        torch.testing.assert_close(enc.center[g], kp[g, visible[g], :2].mean(0))
    assert torch.all((enc.offsets >= 0) & (enc.offsets <= 1))
    decoded = decode_keypoints(enc.center, enc.offsets)
    torch.testing.assert_close(decoded[visible], kp[..., :2][visible])
    labelled = encode_targets(kp, visible_threshold=1)
    torch.testing.assert_close(labelled.visible, (kp[..., 2] > 0).float())
    none = torch.zeros(1, 17, 3)
    none[0, :, 2] = 1  # only occluded joints: no visible joint under the official remap
    empty = batch_targets([{"keypoints": none, "area": torch.ones(1), "size": torch.tensor([8, 8])}],
                          num_keypoints=17, visible_threshold=2, class_head="official", device="cpu")
    assert empty.poses.center_visible.item() == 0 and empty.labels.item() == 0
    assert empty.poses.center.abs().sum() == 0
    binary = batch_targets([{"keypoints": torch.cat([none, kp]), "area": torch.ones(4), "size": torch.tensor([8, 8])}],
                           num_keypoints=17, visible_threshold=2, class_head="binary", device="cpu")
    assert binary.sizes == [3] and torch.all(binary.labels == 0)


def test_codec_flip_negates_offsets_and_swaps_sides():
    from posetr.data.keypoints import keypoint_info

    kp = make_target(2)["keypoints"]
    flipped = kp[:, keypoint_info("coco").flip_index()].clone()
    flipped[..., 0] = 1 - flipped[..., 0]
    a, b = encode_targets(kp), encode_targets(flipped)
    torch.testing.assert_close(b.center[:, 0], 1 - a.center[:, 0])
    swapped = a.offsets[:, keypoint_info("coco").flip_index()]
    torch.testing.assert_close(b.offsets[..., 0], 1 - swapped[..., 0])  # 0.5 * (-d) + 0.5 = 1 - d'
    torch.testing.assert_close(b.offsets[..., 1], swapped[..., 1])


# ---- matcher ----

def brute_force_cost(outputs, batch, w):
    """The cost table of spec section 5, one (query, person) pair at a time, official masking (masked
    prediction and target entries zeroed before the distance; visibility cost dropped when c_v = 0)."""
    logits, pred = outputs["pred_logits"], outputs["pred_kpts"]
    B, N, _ = logits.shape
    G = batch.labels.shape[1]
    cost = torch.zeros(B, N, G, dtype=torch.float64)
    p = batch.poses
    for b in range(B):
        prob = logits[b].double().softmax(-1)
        for q in range(N):
            v = pred[b, q].double()
            c, d, vis = v[:2], v[2:].view(17, 3)[:, :2], v[2:].view(17, 3)[:, 2]
            joints = c + 2 * (d - 0.5)
            for g in range(batch.sizes[b]):
                m = p.visible[b, g].double()[:, None]
                cv = p.center_visible[b, g].double()
                kpts = (joints * m - p.keypoints[b, g].double() * m).abs().sum()
                deltas = (d * m - p.offsets[b, g].double() * m).abs().sum()
                ctrs = (c * cv - p.center[b, g].double() * cv).norm()
                vis_cost = (vis * cv - p.visible[b, g].double() * cv).norm()
                cost[b, q, g] = (-w["cost_class"] * prob[q, batch.labels[b, g]] + w["cost_kpts"] * kpts
                                 + w["cost_ctrs"] * ctrs + w["cost_deltas"] * deltas + w["cost_vis"] * vis_cost)
    return cost


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("seed", [0, 1])
def test_matcher_equals_brute_force_and_scipy(device, seed):
    people = torch.randint(0, 21, (4,), generator=torch.Generator().manual_seed(seed)).tolist()
    people[seed] = 0  # an image without people
    outputs, targets = random_inputs(batch=4, num_queries=25, people=people, device=device, seed=seed,
                                     dtype=torch.float64)
    batch = encode_batch(targets, device=device, dtype=torch.float64)
    matcher = POETMatcher(**WEIGHTS, match=get_kernels("posetr").match)
    cost = matcher.cost(outputs, batch)
    ref = brute_force_cost({k: v.cpu() for k, v in outputs.items()}, batch._replace(
        poses=type(batch.poses)(*(x.cpu() for x in batch.poses)), labels=batch.labels.cpu()), WEIGHTS)
    for b, n in enumerate(people):
        torch.testing.assert_close(cost[b, :, :n].cpu(), ref[b, :, :n])
    indices = matcher(outputs, batch)
    for b, n in enumerate(people):
        rows, cols = linear_sum_assignment(ref[b, :, :n].numpy())
        assert indices[b][0].device.type == torch.device(device).type
        assert indices[b][0].tolist() == rows.tolist() and indices[b][1].tolist() == cols.tolist()


@pytest.mark.parametrize("num_queries", [50, 25])
def test_matcher_gives_the_official_loops_indices(num_queries):
    """posetr's matcher (one batched LAP call) vs the official per-target loop + scipy per image
    (the bench reference), a README batch of 12 images with 0..20 people."""
    people = torch.randint(0, 21, (12,), generator=torch.Generator().manual_seed(3)).tolist()
    outputs, targets = random_inputs(batch=12, num_queries=num_queries, people=people, seed=3)
    batch = encode_batch(targets)
    ours = POETMatcher(**WEIGHTS, match=get_kernels("posetr").match)(outputs, batch)
    theirs = official_loop_match(outputs, batch, **WEIGHTS)
    scipy_loop = POETMatcher(**WEIGHTS, match=get_kernels("reference").match)(outputs, batch)
    for a, b, c in zip(ours, theirs, scipy_loop):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])


def test_matcher_finds_the_permutation_of_perfect_predictions():
    targets = [make_target(3, seed=0), make_target(2, seed=1)]
    out = perfect_outputs(targets, 8)
    perm = torch.tensor([5, 2, 7, 0, 1, 3, 4, 6])
    shuffled = {k: v[:, perm] for k, v in out.items() if k != "aux_outputs"}
    matcher = POETMatcher(**WEIGHTS, match=get_kernels("posetr").match)
    for b, (i, j) in enumerate(matcher(shuffled, encode_batch(targets))):
        assert torch.equal(perm[i], j)  # query i holds person perm[i]


# ---- losses ----

@pytest.mark.parametrize("device", devices())
def test_perfect_predictions_give_zero_geometric_losses(device):
    cfg = tiny_config()
    _, criterion, _ = build_model(cfg)
    targets = [make_target(3, seed=0), make_target(2, seed=1)]
    out = perfect_outputs(targets, 12, layers=3)
    losses = criterion.to(device)({k: v.to(device) if torch.is_tensor(v) else
                                   [{a: t.to(device) for a, t in d.items()} for d in v] for k, v in out.items()},
                                  targets)
    assert set(losses) == set(criterion.weight_dict) and len(losses) == 15
    for name, value in losses.items():
        if not name.startswith("loss_ce"):
            assert value.item() == pytest.approx(0.0, abs=1e-6), name
        else:
            assert value.item() < 1e-6


def test_loss_values_weights_and_normalisation():
    cfg = POETConfig()
    _, criterion, _ = build_model(dataclasses.replace(tiny_config(), aux_loss=False))
    assert criterion.weight_dict == {"loss_ce": 1.0, "loss_kpts": 4.0, "loss_ctrs": 0.5, "loss_deltas": 0.5,
                                     "loss_vis": 0.2}
    torch.testing.assert_close(criterion.empty_weight, torch.tensor([1.0, 1.0, cfg.eos_coef]))
    targets = [make_target(3, seed=0), make_target(2, seed=1)]
    out = perfect_outputs(targets, 12)
    out["pred_kpts"] = out["pred_kpts"].clone()
    out["pred_kpts"][0, 0, 0] += 0.1  # person 0 of image 0: centre x off by 0.1
    losses = criterion(out, targets)
    n_visible = int((targets[0]["keypoints"][0, :, 2] == 2).sum())
    # a centre shift moves every absolute joint; offsets unchanged; 5 people in the batch
    assert losses["loss_ctrs"].item() == pytest.approx(0.01 / 5, rel=1e-4)
    assert losses["loss_kpts"].item() == pytest.approx(0.1 * n_visible / 5, rel=1e-4)
    assert losses["loss_deltas"].item() == pytest.approx(0.0, abs=1e-7)
    logits = out["pred_logits"]
    classes = torch.full((2, 12), 2)
    classes[0, :3], classes[1, :2] = 1, 1
    expected = torch.nn.functional.cross_entropy(logits.transpose(1, 2), classes, torch.tensor([1.0, 1.0, 0.1]))
    assert losses["loss_ce"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_images_without_people_and_crowd_only_images_train():
    """No person in the batch (e.g. an image whose only annotations are crowd regions): CE only, finite,
    backward works; people without a visible joint (class 0) take part in matching and CE only."""
    torch.manual_seed(0)
    model, criterion, _ = build_model(tiny_config())
    images = torch.randn(2, 3, 64, 96)
    masks = torch.zeros(2, 64, 96, dtype=torch.bool)
    for targets in ([make_target(0, seed=0), make_target(0, seed=1)], [make_target(0), make_target(2, seed=1)]):
        losses = criterion(model(images, masks), targets)
        assert all(torch.isfinite(v) for v in losses.values())
        sum(criterion.weight_dict[k] * v for k, v in losses.items()).backward()
    empty = make_target(1)
    empty["keypoints"][..., 2] = 0  # a person annotated without keypoints
    out = perfect_outputs([empty], 12)
    losses = criterion(out, [empty])
    assert losses["loss_ce"].item() < 1e-6  # matched to a query predicting class 0
    assert losses["loss_kpts"].item() == losses["loss_vis"].item() == 0.0


# ---- postprocess ----

def test_postprocess_decodes_to_original_pixels_and_drops_class_zero():
    targets = [make_target(3, seed=0)]
    out = perfect_outputs(targets, 6)
    out["pred_logits"][0, 3, :] = torch.tensor([5.0, 0.0, 0.0])  # a query predicting "person without joints"
    out["pred_logits"][0, 4, :] = torch.tensor([0.0, 1.0, 20.0])  # no-object, but p_1 > p_0: label 1
    _, _, post = build_model(tiny_config(num_queries=6))
    res = post(out, torch.tensor([[200, 300]]))[0]
    # the official label is argmax(p_0, p_1): queries 3 (class 0) and 5 (p_0 = p_1: label 0) are left out
    assert res["scores"].shape == (4,) and res["keypoints"].shape == (4, 17, 3)
    assert res["scores"][-1] < 1e-6
    res = post({k: v[:, :3] for k, v in out.items() if k != "aux_outputs"}, torch.tensor([[200, 300]]))[0]
    kp = targets[0]["keypoints"]
    visible = kp[..., 2] == 2
    expected = kp[..., :2] * torch.tensor([300.0, 200.0])
    order = res["scores"].argsort(descending=True)
    assert torch.all(res["scores"][:-1] >= res["scores"][1:])
    got = res["keypoints"]
    for g in range(3):
        match = [i for i in range(3) if torch.allclose(got[i, visible[g], :2], expected[g][visible[g]], atol=1e-3)]
        assert len(match) == 1
    assert torch.all(got[..., 2] == 1) and order.numel() == 3
    _, _, binary = build_model(tiny_config(class_head="binary"))
    res = binary({"pred_logits": torch.randn(1, 6, 2), "pred_kpts": torch.rand(1, 6, 53)}, torch.tensor([[20, 30]]))
    assert res[0]["scores"].shape == (6,)


# ---- training ----

def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model, criterion, _ = build_model(tiny_config())
    images = torch.randn(2, 3, 64, 96)
    masks = torch.zeros(2, 64, 96, dtype=torch.bool)
    targets = [make_target(2, seed=0), make_target(1, seed=1)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(15):
        losses = criterion(model(images, masks), targets)
        total = sum(criterion.weight_dict[k] * v for k, v in losses.items())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < 0.7 * totals[0]
