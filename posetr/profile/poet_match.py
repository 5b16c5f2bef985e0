"""POET's matching step for a README batch: posetr's matcher vs the official algorithm.

posetr (``POETMatcher`` with ``posetr.models.common.matching.match``): the [B, N, G] cost in a few
broadcast operations, then every image solved in one ``batched_linear_sum_assignment`` call.

Reference (:func:`official_loop_match`): amathislab/poet ``models/matcher.py`` ``HungarianMatcher.forward``
as it runs, on the CPU instead of its hard-coded ``.cuda()``: predictions flattened over the batch and
targets concatenated over the batch, a cost against EVERY target of the batch (also other images'), the
masked predictions expanded to [B*N, 2 + 2K, G_total], a Python loop over the targets with one
``torch.cdist`` per cost term, then ``scipy.optimize.linear_sum_assignment`` once per image on its
block. Two changes so that both sides compute the same costs: the visibility cost of people without a
visible joint is dropped (the official code's intent; its mis-indexed mask is documented in
posetr/models/poet/matcher.py), and the Euclidean ``cdist`` terms use
``compute_mode="donot_use_mm_for_euclid_dist"`` (the default switches to a matmul formula above 25
rows, whose rounding would make near-ties differ).

Batch: the README's 12 images per step (6 per GPU x 2), N = 50 (README) and 25 (paper), 0..20 people per
image (drawn once, seeded), K = 17.
"""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from posetr.profile import Case, pass_bytes, tensor_bytes

BATCH = 12
QUERIES = (50, 25)
MAX_PEOPLE = 20
WEIGHTS = dict(cost_class=1.0, cost_kpts=4.0, cost_ctrs=0.5, cost_deltas=0.5, cost_vis=0.2)


def random_inputs(*, batch: int, num_queries: int, people, num_keypoints: int = 17, device="cpu", seed: int = 0,
                  dtype=torch.float32):
    """(outputs, targets): random POET outputs (3 logits, sigmoid pose vectors) and data-contract targets
    with ``people[b]`` people in image b (COCO v in {0, 1, 2}; every fifth person has no visible joint)."""
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(batch, num_queries, 3, generator=g, dtype=dtype).to(device),
               "pred_kpts": torch.rand(batch, num_queries, 2 + 3 * num_keypoints, generator=g, dtype=dtype).to(device)}
    targets = []
    for n in people:
        kpts = torch.rand(n, num_keypoints, 3, generator=g, dtype=dtype)
        kpts[..., 2] = torch.randint(0, 3, (n, num_keypoints), generator=g).to(dtype)
        kpts[::5, :, 2] = kpts[::5, :, 2].clamp(max=1)
        targets.append({"keypoints": kpts.to(device), "area": torch.ones(n, dtype=dtype, device=device),
                        "size": torch.tensor([480, 640])})
    return outputs, targets


def official_loop_match(outputs: dict, batch, *, cost_class: float, cost_kpts: float, cost_ctrs: float,
                        cost_deltas: float, cost_vis: float):
    """The official matcher's algorithm (see the module docstring) on a
    :class:`~posetr.models.poet.codec.TargetBatch`; returns scipy's (row, col) pairs per image as int64
    tensors."""
    logits, pred = outputs["pred_logits"], outputs["pred_kpts"]
    B, N = logits.shape[:2]
    sizes = batch.sizes
    p = batch.poses

    def concat(x):  # the official targets: every image's people, concatenated
        return torch.cat([x[b, :n] for b, n in enumerate(sizes)])

    labels, center, cv = concat(batch.labels), concat(p.center), concat(p.center_visible)
    offsets, visible = concat(p.offsets), concat(p.visible)
    G = len(labels)
    prob = logits.flatten(0, 1).softmax(-1)
    out = pred.flatten(0, 1)
    cost_cls = -prob[:, labels]
    x = torch.cat([out[:, :1], out[:, 2::3]], 1)  # [B*N, 1 + K]: centre x, then offsets
    y = torch.cat([out[:, 1:2], out[:, 3::3]], 1)
    x_abs, y_abs = x.clone(), y.clone()
    x_abs[:, 1:] = (x_abs[:, 1:] - 0.5) * 2 + x_abs[:, :1]
    y_abs[:, 1:] = (y_abs[:, 1:] - 0.5) * 2 + y_abs[:, :1]
    tx = torch.cat([center[:, :1], offsets[..., 0]], 1)  # [G, 1 + K]
    ty = torch.cat([center[:, 1:], offsets[..., 1]], 1)
    tx_abs = torch.cat([center[:, :1], (offsets[..., 0] - 0.5) * 2 + center[:, :1]], 1)
    ty_abs = torch.cat([center[:, 1:], (offsets[..., 1] - 0.5) * 2 + center[:, 1:]], 1)
    mask = torch.cat([cv[:, None], visible], 1)  # [G, 1 + K]
    out_rel = torch.stack([x[..., None] * mask.T, y[..., None] * mask.T], 2).reshape(B * N, -1, G)
    out_abs = torch.stack([x_abs[..., None] * mask.T, y_abs[..., None] * mask.T], 2).reshape(B * N, -1, G)
    tgt_rel = torch.stack([tx * mask, ty * mask], 2).reshape(G, -1)
    tgt_abs = torch.stack([tx_abs * mask, ty_abs * mask], 2).reshape(G, -1)
    vis_pred, vis_tgt = out[:, 4::3], visible
    euclid = "donot_use_mm_for_euclid_dist"
    c_kpts, c_ctrs, c_deltas, c_vis = (torch.empty(B * N, G, dtype=out.dtype) for _ in range(4))
    for i in range(G):
        c_deltas[:, i, None] = torch.cdist(out_rel[:, 2:, i], tgt_rel[i, 2:][None], p=1)
        c_kpts[:, i, None] = torch.cdist(out_abs[:, 2:, i], tgt_abs[i, 2:][None], p=1)
        c_ctrs[:, i, None] = torch.cdist(out_rel[:, :2, i], tgt_rel[i, :2][None], p=2, compute_mode=euclid)
        c_vis[:, i, None] = torch.cdist(vis_pred * cv[i], (vis_tgt[i] * cv[i])[None], p=2, compute_mode=euclid)
    C = (cost_kpts * c_kpts + cost_ctrs * c_ctrs + cost_deltas * c_deltas + cost_class * cost_cls
         + cost_vis * c_vis)
    C = C.view(B, N, -1).cpu()
    pairs = [linear_sum_assignment(c[b]) for b, c in enumerate(C.split(sizes, -1))]
    return [(torch.as_tensor(r, dtype=torch.int64), torch.as_tensor(c, dtype=torch.int64)) for r, c in pairs]


def _setup(batch, num_queries, max_people, device):
    from posetr.models.poet.codec import batch_targets

    people = torch.randint(0, max_people + 1, (batch,), generator=torch.Generator().manual_seed(1)).tolist()
    outputs, targets = random_inputs(batch=batch, num_queries=num_queries, people=people, device=device)
    return outputs, batch_targets(targets, num_keypoints=17, visible_threshold=2, class_head="official",
                                  device=device)


def _posetr(inputs):
    from posetr.models.common.matching import match
    from posetr.models.poet.matcher import POETMatcher

    return POETMatcher(**WEIGHTS, match=match)(*inputs)


def _reference(inputs):
    return official_loop_match(*inputs, **WEIGHTS)


def bytes_moved(inputs):
    """Reads the logits, the pose vectors and the encoded targets; writes row and column indices (int64)."""
    outputs, batch = inputs
    B, N = outputs["pred_logits"].shape[:2]
    reads = tensor_bytes(outputs["pred_logits"], outputs["pred_kpts"], *batch.poses, batch.labels)
    return pass_bytes(reads, sum(min(N, n) for n in batch.sizes) * 2 * 8)


def cases(device, quick=False):
    """POET matching of 12 images, 0..20 people each, N = 50 and 25 (cost + assignment); ``quick``: 2
    images, N = 5, 0..3 people (checks the profile, not a number to quote)."""
    sizes = [(2, 5, 3)] if quick else [(BATCH, n, MAX_PEOPLE) for n in QUERIES]
    return [Case(op="poet_match", shape=f"B={b} N={n} M=0..{m}", mode="cost+LAP",
                 setup=lambda b=b, n=n, m=m: _setup(b, n, m, device), posetr=_posetr, reference=_reference,
                 reference_name="official loop", bytes_moved=bytes_moved)
            for b, n, m in sizes]
