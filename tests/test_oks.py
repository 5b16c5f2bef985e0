"""OKS ops: float64 oracle, gradients, dtypes, edge cases, errors, opcheck, CPU vs CUDA."""
import math

import pytest
import torch

from posetr.data.keypoints import COCO_SIGMAS, CROWDPOSE_SIGMAS
from posetr.ops import OKSLoss, oks, oks_loss, pairwise_oks
from posetr.ops.reference import oks_loss_pytorch, oks_pytorch, pairwise_oks_pytorch

from conftest import devices


def make_people(M, K, batch=(), dtype=torch.float64, device="cpu", seed=0, p_visible=0.7):
    """Ground truth: keypoints in pixels, labels, areas; one person (if any) has no label."""
    gen = torch.Generator().manual_seed(seed)
    center = torch.rand(*batch, M, 1, 2, generator=gen, dtype=torch.float64) * 800
    size = 20 + torch.rand(*batch, M, 1, 1, generator=gen, dtype=torch.float64) * 200
    gt = center + (torch.rand(*batch, M, K, 2, generator=gen, dtype=torch.float64) - 0.5) * size
    visible = torch.rand(*batch, M, K, generator=gen) < p_visible
    if M > 1:
        visible[..., 0, :] = False
    area = (size[..., 0, 0] ** 2) * (0.3 + 0.7 * torch.rand(*batch, M, generator=gen, dtype=torch.float64))
    return gt.to(device, dtype), visible.to(device), area.to(device, dtype)


def near(gt, noise, seed, dtype=None):
    """Predictions around gt, `noise` pixels apart on average."""
    gen = torch.Generator().manual_seed(seed)
    out = gt.cpu().double() + torch.randn(gt.shape, generator=gen, dtype=torch.float64) * noise
    return out.to(gt.device, dtype or gt.dtype)


def sigmas_for(K, dtype=torch.float64, device="cpu"):
    base = COCO_SIGMAS if K == 17 else (CROWDPOSE_SIGMAS if K == 14 else COCO_SIGMAS[:K])
    return torch.tensor(base, dtype=dtype, device=device)


# ---------------------------------------------------------------------------- oracle (float64)
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("batch", [(), (3,)], ids=["unbatched", "batched"])
@pytest.mark.parametrize("K", [17, 14, 1])
def test_pairwise_oks_matches_oracle(device, batch, K):
    gt, visible, area = make_people(7, K, batch, device=device, seed=K)
    pred = torch.cat([near(gt, 10, 1), near(gt, 40, 2)], dim=-3)  # [..., 14, K, 2]
    sigmas = sigmas_for(K, device=device)
    ours = pairwise_oks(pred, gt, visible, area, sigmas)
    assert ours.shape == (*batch, 14, 7)
    torch.testing.assert_close(ours, pairwise_oks_pytorch(pred, gt, visible, area, sigmas), rtol=1e-12, atol=1e-15)
    assert ours.min() >= 0 and ours.max() <= 1


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("K", [17, 14, 1])
def test_oks_and_loss_match_oracle(device, K):
    gt, visible, area = make_people(40, K, device=device, seed=K)
    pred = near(gt, 15, 3)
    sigmas = sigmas_for(K, device=device)
    torch.testing.assert_close(oks(pred, gt, visible, area, sigmas), oks_pytorch(pred, gt, visible, area, sigmas))
    for mode in ("log", "linear"):
        for reduction in ("none", "mean", "sum"):
            ours = oks_loss(pred, gt, visible, area, sigmas, mode=mode, reduction=reduction)
            ref = oks_loss_pytorch(pred, gt, visible, area, sigmas, mode=mode, reduction=reduction)
            torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_matched_oks_is_the_diagonal_of_pairwise():
    gt, visible, area = make_people(9, 17, seed=4)
    pred = near(gt, 20, 5)
    sigmas = sigmas_for(17)
    torch.testing.assert_close(oks(pred, gt, visible, area, sigmas), pairwise_oks(pred, gt, visible, area, sigmas).diag())


def test_oks_formula_by_hand():
    """One keypoint at distance d: exp(-d^2 / ((2 sigma)^2 (area + eps) 2)), pycocotools' eps."""
    pred = torch.tensor([[[3.0, 4.0]]], dtype=torch.float64)
    gt = torch.zeros(1, 1, 2, dtype=torch.float64)
    sigma, area = 0.1, 50.0
    expected = math.exp(-25.0 / ((2 * sigma) ** 2 * (area + 2.220446049250313e-16) * 2))
    got = pairwise_oks(pred, gt, torch.ones(1, 1, dtype=torch.bool), torch.tensor([area]), [sigma])
    assert got.item() == pytest.approx(expected, rel=1e-14)


def test_large_problem_uses_several_tasks():
    """More predictions than one CPU task holds (the kernel splits them into blocks)."""
    gt, visible, area = make_people(3, 17, seed=6)
    pred = near(gt.repeat(700, 1, 1), 30, 7)  # 2100 predictions
    sigmas = sigmas_for(17)
    torch.testing.assert_close(
        pairwise_oks(pred, gt, visible, area, sigmas), pairwise_oks_pytorch(pred, gt, visible, area, sigmas)
    )
    pred32, gt32, area32 = pred.float(), gt.float(), area.float()
    torch.testing.assert_close(
        oks(pred32, gt32.repeat(700, 1, 1), visible.repeat(700, 1), area32.repeat(700), sigmas.float()),
        oks_pytorch(pred, gt.repeat(700, 1, 1), visible.repeat(700, 1), area.repeat(700), sigmas).float(),
        rtol=0,
        atol=2e-6,
    )


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("device", devices())
def test_oks_gradcheck(device):
    gt, visible, area = make_people(6, 17, device=device, seed=8)
    pred = near(gt, 10, 9).requires_grad_()
    gt = gt.clone().requires_grad_()
    sigmas = sigmas_for(17, device=device)
    assert torch.autograd.gradcheck(lambda p, g: oks(p, g, visible, area, sigmas), (pred, gt))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", ["log", "linear"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_oks_loss_gradcheck(device, mode, reduction):
    gt, visible, area = make_people(6, 17, device=device, seed=10)
    pred = near(gt, 12, 11).requires_grad_()
    sigmas = sigmas_for(17, device=device)
    assert torch.autograd.gradcheck(
        lambda p: oks_loss(p, gt, visible, area, sigmas, mode=mode, reduction=reduction), (pred,)
    )


def test_log_loss_gradient_follows_clamp():
    """Below eps the log loss is -log(eps) with zero gradient (torch.clamp), as in PETR."""
    gt, visible, area = make_people(2, 17, seed=12)
    visible[:] = True
    pred = (gt + 1e4).requires_grad_()  # OKS ~ 0
    loss = oks_loss(pred, gt, visible, area, sigmas_for(17), reduction="none")
    torch.testing.assert_close(loss, torch.full_like(loss, -math.log(1e-6)))
    loss.sum().backward()
    assert (pred.grad == 0).all()


def test_gradients_match_oracle_autograd():
    gt, visible, area = make_people(30, 17, seed=13)
    pred = near(gt, 25, 14)
    sigmas = sigmas_for(17)
    for mode in ("log", "linear"):
        p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        oks_loss(p1, gt, visible, area, sigmas, mode=mode).backward()
        oks_loss_pytorch(p2, gt, visible, area, sigmas, mode=mode).backward()
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(
    "dtype,atol", [(torch.float32, 2e-6), (torch.float16, 2e-3), (torch.bfloat16, 1.5e-2)], ids=["f32", "f16", "bf16"]
)
def test_low_precision(device, dtype, atol):
    """Sums run in float32; the error is the rounding of the inputs (coordinates ~800 px) and output."""
    gt, visible, area = make_people(8, 17, device=device, seed=15)
    pred = near(gt, 8, 16)
    # Reference on the rounded inputs, in float64: isolates the kernel's own error.
    p, g = pred.to(dtype), gt.to(dtype)
    sigmas = sigmas_for(17, device=device)
    expected = pairwise_oks_pytorch(p.double(), g.double(), visible, area, sigmas)
    got = pairwise_oks(p, g, visible, area.float(), sigmas.float())
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=atol)
    matched = oks(p, g, visible, area.float(), sigmas.float())
    torch.testing.assert_close(matched.double(), oks_pytorch(p.double(), g.double(), visible, area, sigmas), rtol=0, atol=atol)
    # Gradients flow in the input dtype.
    pg = p.clone().requires_grad_()
    oks_loss(pg, g, visible, area.float(), sigmas.float()).backward()
    assert pg.grad.dtype == dtype and torch.isfinite(pg.grad.float()).all()


def test_float32_loss_gradient_close_to_float64():
    gt, visible, area = make_people(50, 17, seed=17)
    pred = near(gt, 20, 18)
    sigmas = sigmas_for(17)
    p64, p32 = pred.clone().requires_grad_(), pred.float().requires_grad_()
    oks_loss(p64, gt, visible, area, sigmas).backward()
    oks_loss(p32, gt.float(), visible, area.float(), sigmas.float()).backward()
    torch.testing.assert_close(p32.grad.double(), p64.grad, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------- edge cases
def test_people_without_labels_get_zero():
    gt, visible, area = make_people(3, 17, seed=19)
    visible[1] = False
    pred = gt.clone()
    sigmas = sigmas_for(17)
    pw = pairwise_oks(pred, gt, visible, area, sigmas)
    assert (pw[:, 1] == 0).all() and (pw[:, 0] == 0).all()
    matched = oks(pred.requires_grad_(), gt, visible, area, sigmas)
    assert matched[0] == 0 and matched[1] == 0 and matched[2] == 1
    matched.sum().backward()
    assert (pred.grad == 0).all()


def test_perfect_prediction_and_zero_area():
    gt, visible, area = make_people(4, 17, seed=20)
    visible[:] = True
    area[0] = 0  # allowed: pycocotools' eps keeps the division finite
    sigmas = sigmas_for(17)
    got = oks(gt.clone(), gt, visible, area, sigmas)
    torch.testing.assert_close(got, torch.ones_like(got))
    assert oks(gt + 1, gt, visible, area, sigmas)[0] == 0


def test_far_predictions_underflow_to_zero():
    gt, visible, area = make_people(2, 17, seed=21)
    for dtype in (torch.float64, torch.float32):
        got = pairwise_oks((gt + 1e5).to(dtype), gt.to(dtype), visible, area, sigmas_for(17, dtype))
        assert (got == 0).all()


@pytest.mark.parametrize("N,M", [(0, 5), (5, 0), (0, 0)])
def test_empty_pairwise(N, M):
    gt, visible, area = make_people(M, 17, seed=22)
    pred = torch.rand(N, 17, 2, dtype=torch.float64)
    assert pairwise_oks(pred, gt, visible, area, COCO_SIGMAS).shape == (N, M)
    assert pairwise_oks(pred[None], gt[None], visible[None], area[None], COCO_SIGMAS).shape == (1, N, M)
    empty_batch = pairwise_oks(pred[None][:0], gt[None][:0], visible[None][:0], area[None][:0], COCO_SIGMAS)
    assert empty_batch.shape == (0, N, M)


def test_empty_pairs_loss_is_zero_with_grad():
    pred = torch.zeros(0, 17, 2, requires_grad=True)
    args = (torch.zeros(0, 17, 2), torch.zeros(0, 17, dtype=torch.bool), torch.zeros(0), COCO_SIGMAS)
    assert oks(pred, *args).shape == (0,)
    for mode in ("log", "linear"):
        for reduction in ("mean", "sum"):
            loss = oks_loss(pred, *args, mode=mode, reduction=reduction)
            assert loss.item() == 0 and loss.requires_grad
            loss.backward()
            assert pred.grad.shape == (0, 17, 2)
        assert oks_loss(pred, *args, mode=mode, reduction="none").shape == (0,)


def test_non_contiguous_inputs():
    gt, visible, area = make_people(6, 17, seed=23)
    pred = near(gt, 10, 24)
    sigmas = sigmas_for(17)
    # Keypoints as the first 2 of 3 columns (x, y, v), persons every other row.
    pred_nc = torch.cat([pred, torch.ones_like(pred[..., :1])], -1)[..., :2]
    gt_nc = torch.stack([gt, gt], 1)[:, 0]
    vis_nc = visible.t().contiguous().t()
    assert not pred_nc.is_contiguous() and not gt_nc.is_contiguous() and not vis_nc.is_contiguous()
    torch.testing.assert_close(
        pairwise_oks(pred_nc, gt_nc, vis_nc, area, sigmas), pairwise_oks(pred, gt, visible, area, sigmas)
    )
    p = pred_nc.clone().requires_grad_()
    oks_loss(p[:, :, :2], gt_nc, vis_nc, area, sigmas).backward()
    p2 = pred.clone().requires_grad_()
    oks_loss(p2, gt, visible, area, sigmas).backward()
    torch.testing.assert_close(p.grad, p2.grad)


def test_nan_prediction_propagates():
    gt, visible, area = make_people(3, 17, seed=25)
    visible[:] = True
    pred = gt.clone()
    pred[1, 4, 0] = float("nan")
    for dtype in (torch.float64, torch.float32):
        pw = pairwise_oks(pred.to(dtype), gt.to(dtype), visible, area, sigmas_for(17, dtype))
        assert pw[1].isnan().all() and not pw[[0, 2]].isnan().any()
        matched = oks(pred.to(dtype), gt.to(dtype), visible, area, sigmas_for(17, dtype))
        assert matched[1].isnan() and not matched[[0, 2]].isnan().any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["log", "linear"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("where", ["labelled pred", "unlabelled pred", "gt"])
def test_nan_input_gives_nan_loss_and_gradient_like_the_reference(dtype, mode, reduction, where):
    """A NaN in a labelled keypoint makes its pair's loss NaN (the log loss once clamped it to
    the finite -log(eps) while its gradient was NaN) and its gradient NaN where autograd through
    the reference puts NaN. An unlabelled keypoint takes no part in OKS (pycocotools): a NaN
    there changes neither value nor gradient, in oks_loss, oks and pairwise_oks alike."""
    gt, visible, area = make_people(4, 17, dtype=dtype, seed=40)
    visible[2, :3] = True
    visible[2, 3] = False
    pred = near(gt, 8, 41)
    gt = gt.clone()
    target, k = (gt, 0) if where == "gt" else (pred, 0 if where == "labelled pred" else 3)
    target[2, k, 0] = float("nan")
    nan_expected = where != "unlabelled pred"
    sigmas = sigmas_for(17, dtype)
    ours_pred = pred.clone().requires_grad_()
    ref_pred = pred.clone().requires_grad_()
    ours = oks_loss(ours_pred, gt, visible, area, sigmas, mode=mode, reduction=reduction)
    ref = oks_loss_pytorch(ref_pred, gt, visible, area, sigmas, mode=mode, reduction=reduction)
    assert bool(ours.isnan().any()) == nan_expected
    torch.testing.assert_close(ours, ref, equal_nan=True)
    ours.sum().backward()
    ref.sum().backward()
    assert bool(ours_pred.grad.isnan().any()) == nan_expected
    torch.testing.assert_close(ours_pred.grad, ref_pred.grad, equal_nan=True)
    matched = oks(pred, gt, visible, area, sigmas)
    assert bool(matched[2].isnan()) == nan_expected and not matched[[0, 1, 3]].isnan().any()
    torch.testing.assert_close(matched, oks_pytorch(pred, gt, visible, area, sigmas), equal_nan=True)
    pairwise = pairwise_oks(pred, gt, visible, area, sigmas)
    assert bool(pairwise[2, 2].isnan()) == nan_expected  # other people may label keypoint 3
    torch.testing.assert_close(pairwise, pairwise_oks_pytorch(pred, gt, visible, area, sigmas), equal_nan=True)


def opera_linear_oks_loss(pred, gt, visible, area, sigmas, eps=1e-6):
    """ED-Pose's / opera's linear OKS loss written out (models/edpose/utils.py, opera/models/
    losses/oks_loss.py): 1 - clamp(OKS, min=eps), with pycocotools' OKS."""
    return 1 - oks_pytorch(pred, gt, visible, area, sigmas).clamp(min=eps)


def test_linear_loss_clamps_like_opera_and_ed_pose():
    gt, visible, area = make_people(6, 17, seed=42)
    visible[:] = True
    pred = near(gt, 10, 43)
    pred[:3] += 1e4  # OKS ~ 0: below the clamp
    sigmas = sigmas_for(17)
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    ours = oks_loss(p1, gt, visible, area, sigmas, mode="linear", reduction="none")
    theirs = opera_linear_oks_loss(p2, gt, visible, area, sigmas)
    torch.testing.assert_close(ours, theirs, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(ours[:3], torch.full((3,), 1 - 1e-6, dtype=ours.dtype))
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(p1.grad, p2.grad)
    assert (p1.grad[:3] == 0).all() and (p1.grad[3:] != 0).any()
    # eps=0: the unclamped 1 - OKS (ED-Pose's paper).
    unclamped = oks_loss(pred, gt, visible, area, sigmas, mode="linear", eps=0.0, reduction="none")
    torch.testing.assert_close(unclamped, 1 - oks_pytorch(pred, gt, visible, area, sigmas), rtol=0, atol=1e-15)
    module = OKSLoss(sigmas, mode="linear", reduction="none")
    torch.testing.assert_close(module(pred, gt, visible, area), theirs.detach())
    with pytest.raises(ValueError, match="eps must be non-negative"):
        oks_loss(pred, gt, visible, area, sigmas, mode="linear", eps=-1.0)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        OKSLoss(sigmas, mode="linear", eps=-1.0)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        torch.ops.posetr.oks(pred, gt, visible, area, sigmas, "linear", -1.0)


# ---------------------------------------------------------------------------- module
def test_oks_loss_module():
    gt, visible, area = make_people(5, 17, dtype=torch.float32, seed=26)
    pred = near(gt, 10, 27).requires_grad_()
    criterion = OKSLoss(COCO_SIGMAS, mode="linear", reduction="sum")
    assert "sigmas" not in criterion.state_dict()
    loss = criterion(pred, gt, visible, area)
    torch.testing.assert_close(loss, oks_loss(pred, gt, visible, area, COCO_SIGMAS, mode="linear", reduction="sum"))
    loss.backward()
    assert pred.grad is not None
    assert "mode='linear'" in repr(criterion)
    with pytest.raises(ValueError, match="mode"):
        OKSLoss(COCO_SIGMAS, mode="square")
    with pytest.raises(ValueError, match="reduction"):
        OKSLoss(COCO_SIGMAS, reduction="max")
    with pytest.raises(ValueError, match="sigmas"):
        OKSLoss([[0.1]])


# ---------------------------------------------------------------------------- errors
def _valid(K=17, M=3):
    gt, visible, area = make_people(M, K, seed=28)
    return near(gt, 5, 29), gt, visible, area, sigmas_for(K)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: (a[0][..., :1], *a[1:]), "pred.size"),
        (lambda a: (a[0][0], *a[1:]), "pred must be a 3-D tensor"),
        (lambda a: (a[0][:, :5], *a[1:]), "gt.size\\(1\\) must be 5"),
        (lambda a: (*a[:4], a[4][:5]), "sigmas.size\\(0\\) must be 17"),
        (lambda a: (a[0][None], *a[1:]), "gt must be a 4-D tensor"),
        (lambda a: (a[0][None], a[1][None].expand(2, -1, -1, -1), a[2][None], a[3][None], a[4]), "batch size"),
        (lambda a: (a[0], a[1], a[2][:, :5], *a[3:]), "visible must have shape"),
        (lambda a: (*a[:3], a[3][:2], a[4]), "area must have shape"),
        (lambda a: (*a[:3], -a[3], a[4]), "area must be non-negative"),
        (lambda a: (*a[:4], a[4] * 0), "sigmas must be positive"),
        (lambda a: (a[0].long(), *a[1:]), "pred must be float"),
        (lambda a: (a[0], a[1].float(), *a[2:]), "gt must have the dtype of pred"),
        (lambda a: (a[0], a[1], a[2].float(), *a[3:]), "visible must be Bool"),
        (lambda a: (*a[:3], a[3].long(), a[4]), "area must be float"),
    ],
)
def test_pairwise_errors(change, match):
    with pytest.raises(ValueError, match=match):
        pairwise_oks(*change(_valid()))


def test_matched_errors():
    pred, gt, visible, area, sigmas = _valid()
    with pytest.raises(ValueError, match="gt must have the shape of pred"):
        oks(pred, gt[:2], visible, area, sigmas)
    with pytest.raises(ValueError, match="area must have shape"):
        oks(pred, gt, visible, area[:2], sigmas)
    with pytest.raises(ValueError, match="area must be non-negative"):
        oks(pred, gt, visible, area * float("nan"), sigmas)
    with pytest.raises(ValueError, match="mode"):
        oks_loss(pred, gt, visible, area, sigmas, mode="l2")
    with pytest.raises(ValueError, match="reduction"):
        oks_loss(pred, gt, visible, area, sigmas, reduction="avg")
    with pytest.raises(ValueError, match="eps must be positive"):
        oks_loss(pred, gt, visible, area, sigmas, eps=0.0)
    with pytest.raises(ValueError, match="transform"):
        torch.ops.posetr.oks(pred, gt, visible, area, sigmas, "square", 1e-6)


def test_pairwise_is_not_differentiable():
    pred, gt, visible, area, sigmas = _valid()
    out = pairwise_oks(pred.requires_grad_(), gt, visible, area, sigmas)
    assert not out.requires_grad  # like a detached matching cost
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.sum().backward()


# ---------------------------------------------------------------------------- torch.library
@pytest.mark.parametrize("device", devices())
def test_opcheck(device):
    gt, visible, area = make_people(5, 17, device=device, seed=30)
    pred = near(gt, 10, 31)
    sigmas = sigmas_for(17, device=device)
    for args in [(pred, gt, visible, area, sigmas), (pred[None], gt[None], visible[None], area[None], sigmas)]:
        torch.library.opcheck(torch.ops.posetr.pairwise_oks.default, args)
    for transform in ("identity", "log", "linear"):
        torch.library.opcheck(
            torch.ops.posetr.oks.default, (pred.clone().requires_grad_(), gt, visible, area, sigmas, transform, 1e-6)
        )
    grad = torch.rand(5, dtype=pred.dtype, device=device)
    torch.library.opcheck(
        torch.ops.posetr._oks_backward.default, (grad, pred, gt, visible, area, sigmas, "log", 1e-6)
    )


def test_torch_compile_fullgraph():
    gt, visible, area = make_people(5, 17, dtype=torch.float32, seed=32)
    pred = near(gt, 10, 33)
    sigmas = sigmas_for(17, dtype=torch.float32)

    def step(p):
        return oks_loss(p, gt, visible, area, sigmas) + pairwise_oks(p.detach(), gt, visible, area, sigmas).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    out1, out2 = compiled(p1), step(p2)
    torch.testing.assert_close(out1, out2)
    out1.backward(), out2.backward()
    torch.testing.assert_close(p1.grad, p2.grad)


# ---------------------------------------------------------------------------- CPU vs CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    gt, visible, area = make_people(13, 17, batch=(2,), seed=34)
    pred = torch.cat([near(gt, 10, 35), near(gt, 50, 36)], dim=-3).to(dtype)
    gt, sigmas = gt.to(dtype), sigmas_for(17)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype in (torch.float32, torch.float64) else dict(rtol=0, atol=1e-2)
    cpu = pairwise_oks(pred, gt, visible, area, sigmas)
    cuda = pairwise_oks(pred.cuda(), gt.cuda(), visible.cuda(), area.cuda(), sigmas.cuda())
    torch.testing.assert_close(cuda.cpu(), cpu, **tol)
    p, g, v, a = pred[0, :13], gt[0], visible[0], area[0]
    pc = p.cuda().requires_grad_()
    pp = p.clone().requires_grad_()
    lc = oks_loss(pc, g.cuda(), v.cuda(), a.cuda(), sigmas.cuda(), reduction="sum")
    lp = oks_loss(pp, g, v, a, sigmas, reduction="sum")
    torch.testing.assert_close(lc.cpu(), lp, **tol)
    lc.backward(), lp.backward()
    torch.testing.assert_close(pc.grad.cpu(), pp.grad, **tol)


@pytest.mark.cuda
def test_cuda_device_mismatch():
    pred, gt, visible, area, sigmas = _valid()
    with pytest.raises(RuntimeError, match="device"):
        pairwise_oks(pred.cuda(), gt, visible, area, sigmas)
