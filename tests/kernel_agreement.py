"""Helpers of the "ops: posetr vs ops: reference" model tests: the same weights in float64 on both."""
import torch


def twin_in_float64(model, ref_model):
    """Copies ``model``'s weights into ``ref_model`` and makes both float64, after moving every sampling
    offset bias off the initial integer grid: Deformable DETR's initial offsets put encoder samples exactly
    on pixel centres, where bilinear sampling has a kink (the kernel and grid_sample take different one-sided
    gradients)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("sampling_offsets.bias"):
                p.add_(torch.rand_like(p) * 0.2 - 0.1)
    ref_model.load_state_dict(model.state_dict())
    model.double()
    ref_model.double()


def assert_same_gradients(model, ref_model, *, rtol=1e-7, atol=1e-9):
    ref_grads = dict(ref_model.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, rtol=rtol, atol=atol, msg=name)


def weighted_total(criterion, losses):
    """The training loss: the sum of the losses named in ``criterion.weight_dict``, each times its weight."""
    return sum(criterion.weight_dict[k] * v for k, v in losses.items() if k in criterion.weight_dict)


def assert_twins_agree_in_float64(model, criterion, ref_model, ref_criterion, images, masks, targets, *,
                                  output_keys, rtol=1e-9, atol=1e-10):
    """The "ops: posetr" ``model`` and the "ops: reference" ``ref_model`` (same architecture) made float64
    twins (:func:`twin_in_float64`) agree on ``images`` (made float64): the outputs named in
    ``output_keys``, every loss of the two criteria on ``targets`` (the same names) and the gradients of
    :func:`weighted_total`."""
    twin_in_float64(model, ref_model)
    images = images.double()
    out, ref_out = model(images, masks), ref_model(images, masks)
    for key in output_keys:
        torch.testing.assert_close(out[key], ref_out[key], rtol=rtol, atol=atol, msg=key)
    losses, ref_losses = criterion(out, targets), ref_criterion(ref_out, targets)
    assert set(losses) == set(ref_losses)
    for k in losses:
        torch.testing.assert_close(losses[k], ref_losses[k], rtol=rtol, atol=atol, msg=k)
    weighted_total(criterion, losses).backward()
    weighted_total(ref_criterion, ref_losses).backward()
    assert_same_gradients(model, ref_model)
