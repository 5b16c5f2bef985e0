"""Batching: whole images zero-padded bottom/right to the batch's largest size, with padding masks
(bottom-up), or person crops of one size stacked (top-down)."""
from __future__ import annotations

import torch


def collate(batch):
    """``[(Float[3, H_i, W_i], target_i)]`` -> ``(images Float[B, 3, Hmax, Wmax], masks Bool[B, Hmax, Wmax],
    targets list[dict])``; ``masks`` is True at padding (docs/model_interfaces.md).

    Raises:
        ValueError: empty batch or images that are not Float[3, H, W].
    """
    if not batch:
        raise ValueError("collate: batch is empty")
    images = [image for image, _ in batch]
    for image in images:
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"collate: images must be Float[3, H, W], got shape {tuple(image.shape)}")
    h = max(image.shape[1] for image in images)
    w = max(image.shape[2] for image in images)
    padded = images[0].new_zeros(len(images), 3, h, w)
    masks = torch.ones(len(images), h, w, dtype=torch.bool)
    for i, image in enumerate(images):
        padded[i, :, : image.shape[1], : image.shape[2]] = image
        masks[i, : image.shape[1], : image.shape[2]] = False
    return padded, masks, [target for _, target in batch]


def collate_crops(batch):
    """Top-down: ``[(Float[3, H, W], target_i)]`` -> ``(images Float[B, 3, H, W], masks Bool[B, H, W] all
    False, targets list[dict])`` (docs/model_interfaces.md, top-down).

    Raises:
        ValueError: empty batch or crops that are not Float[3, H, W] of one size.
    """
    if not batch:
        raise ValueError("collate_crops: batch is empty")
    shape = batch[0][0].shape
    for image, _ in batch:
        if image.dim() != 3 or image.shape[0] != 3 or image.shape != shape:
            raise ValueError(f"collate_crops: crops must be Float[3, H, W] of one size, got shapes "
                             f"{sorted({tuple(i.shape) for i, _ in batch})}")
    images = torch.stack([image for image, _ in batch])
    masks = torch.zeros(len(batch), shape[1], shape[2], dtype=torch.bool)
    return images, masks, [target for _, target in batch]
