"""Checkpoints: model, optimizer, scheduler, epoch and config in one file, written atomically."""
from __future__ import annotations

import os
import tempfile

import torch

from posetr.engine.distributed import unwrap


def save_checkpoint(path: str, *, model, optimizer, scheduler, epoch: int, config: dict) -> None:
    """Writes the checkpoint of the state after ``epoch`` completed epochs to ``path``.

    The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so ``path`` always holds either the previous or the new complete checkpoint.
    """
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "config": config,
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str, *, model, optimizer=None, scheduler=None) -> dict:
    """Loads ``path`` into ``model`` (and ``optimizer`` / ``scheduler`` when given); returns the dict.

    Raises:
        FileNotFoundError: no such file. RuntimeError: not a posetr checkpoint or incompatible weights.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise RuntimeError(f"cannot read checkpoint {path!r}: {exc}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise RuntimeError(f"{path!r} is not a posetr checkpoint (no 'model' entry)")
    try:
        unwrap(model).load_state_dict(state["model"])
    except RuntimeError as exc:
        raise RuntimeError(f"checkpoint {path!r} does not fit the configured model: {exc}") from None
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    return state
