"""Checkpoints: model, optimizer, scheduler, epoch, best AP and the run's config (plain dicts) in one file.

Writing is atomic and durable (:func:`posetr.files.write_atomically`: a temporary file in the same folder,
fsync, then ``os.replace``), so the path always holds either the previous or the new complete checkpoint;
temporary files a killed save left behind (also the ``.checkpoint-*.tmp`` of older versions) are removed by
the next save. Reading never runs code: ``torch.load(weights_only=True)`` accepts tensors,
plain containers, numbers and strings only, and anything else is refused (:class:`CheckpointError`).
"""
from __future__ import annotations

import os
import pickle
import zipfile

import dataclasses

import torch

from posetr.config import Config, config_from_dict
from posetr.engine.distributed import unwrap
from posetr.errors import CheckpointError
from posetr.files import write_atomically

_LEGACY_TMP = ".checkpoint-*.tmp"  # the temporary files of posetr versions before last.pth / best.pth
_SHOWN = 3  # keys named per kind of mismatch


def save_checkpoint(path: str, *, model, optimizer, scheduler, epoch: int, config: dict,
                    best_ap: float | None = None, criterion=None) -> None:
    """Writes the checkpoint of the state after ``epoch`` completed epochs to ``path``, atomically.

    Args:
        config: the run's configuration as plain dicts (``posetr.config.config_to_dict``).
        best_ap: the best AP of the run so far (None: not evaluated yet); ``train --resume`` continues it.
        criterion: the criterion, whose state (Poseur's RealNVP flows: training-only parameters) is saved
            under ``"criterion"`` when it has any.

    Raises:
        OSError: the folder cannot be written (the previous file at ``path`` is left as it was).
    """
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "best_ap": best_ap,
        "config": config,
    }
    if criterion is not None and unwrap(criterion).state_dict():
        state["criterion"] = unwrap(criterion).state_dict()
    write_atomically(path, lambda f: torch.save(state, f), stale_patterns=(_LEGACY_TMP,))


def _unsafe_reason(exc: Exception) -> str:
    """The line of torch's weights-only error that names what was refused (e.g. ``GLOBAL posix.system``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or lines[-1:] or [type(exc).__name__])[0]


def read_checkpoint(path: str, *, mmap: bool = False) -> dict:
    """The contents of the posetr checkpoint ``path``, loaded with ``torch.load(weights_only=True)``.

    Args:
        mmap: map the tensors instead of reading them (cheap when only the config or epoch is needed).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a PyTorch zip checkpoint (corrupt, truncated or another format); holds an
            object other than tensors, plain containers, numbers and strings (refused, never unpickled);
            or not a posetr checkpoint (no ``model`` entry).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"cannot read checkpoint {path!r}: not a PyTorch checkpoint (no zip archive; "
                              "the file is corrupt, truncated or of another format)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load checkpoint {path!r}: it holds a pickled object other than tensors, plain "
            f"containers, numbers and strings ({_unsafe_reason(exc)}); posetr loads checkpoints with "
            "torch.load(weights_only=True) and never runs code from them") from None
    except Exception as exc:  # torch raises several types for a damaged archive
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read checkpoint {path!r} (corrupt or truncated?): {first}") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path!r} is not a posetr checkpoint (no 'model' entry with the weights)")
    return state


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _SHOWN else "")


def describe_mismatch(model_state: dict, checkpoint_state: dict) -> str | None:
    """What keeps ``checkpoint_state`` from loading into a model with ``model_state`` (the first few
    missing keys, unexpected keys and shape mismatches), or None when it fits."""
    missing = [k for k in model_state if k not in checkpoint_state]
    unexpected = [k for k in checkpoint_state if k not in model_state]
    shapes = [f"{k} {list(checkpoint_state[k].shape)} in the checkpoint, {list(v.shape)} in the model"
              for k, v in model_state.items()
              if k in checkpoint_state and hasattr(v, "shape") and hasattr(checkpoint_state[k], "shape")
              and checkpoint_state[k].shape != v.shape]
    parts = [f"{what}: {_names(keys)}" for what, keys in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if keys]
    return "; ".join(parts) or None


def load_checkpoint(path: str, *, model, optimizer=None, scheduler=None, state: dict | None = None,
                    criterion=None) -> dict:
    """Loads ``path`` into ``model`` (and ``optimizer`` / ``scheduler`` / the state of ``criterion`` when
    given and saved); returns the dict.

    Args:
        state: the contents of ``path`` when already read (:func:`read_checkpoint`).

    Raises:
        FileNotFoundError: no such file. CheckpointError: see :func:`read_checkpoint`, or weights that do
        not fit ``model`` (names the first few missing / unexpected keys and shape mismatches).
    """
    state = read_checkpoint(path) if state is None else state
    target = unwrap(model)
    mismatch = describe_mismatch(target.state_dict(), state["model"])
    if mismatch is not None:
        raise CheckpointError(f"checkpoint {path!r} does not fit the configured model: {mismatch}")
    target.load_state_dict(state["model"])
    if criterion is not None and isinstance(state.get("criterion"), dict):
        mismatch = describe_mismatch(unwrap(criterion).state_dict(), state["criterion"])
        if mismatch is not None:
            raise CheckpointError(f"checkpoint {path!r}: its criterion state does not fit the configured one: "
                                  f"{mismatch}")
        unwrap(criterion).load_state_dict(state["criterion"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    return state


# model fields that only say how the weights were initialised before training: a checkpoint's weights replace them
_INIT_ONLY = ("pretrained_backbone",)


def checkpoint_config(state: dict, path: str) -> Config:
    """The run configuration stored in the checkpoint contents ``state`` (read from ``path``).

    Raises:
        CheckpointError: no config in it, or one this posetr version does not accept.
    """
    values = state.get("config")
    if not isinstance(values, dict):
        raise CheckpointError(f"checkpoint {path!r} holds no config: pass --config")
    try:
        return config_from_dict(values)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path!r}: its config is not valid here ({exc}); pass --config") from None


def check_same_model(cfg: Config, saved: Config, path: str) -> None:
    """Refuses a ``cfg`` whose model section differs from ``saved`` (the checkpoint's), naming the first
    differing key; ``pretrained_backbone`` and the model config's ``WEIGHT_FREE_FIELDS`` (kernels,
    initialisation, losses, inference rules such as Poseur's ``flip_fuse``) may differ.

    Raises:
        ValueError: a differing ``model.<key>``.
    """
    ours, theirs = dataclasses.asdict(cfg.model), dataclasses.asdict(saved.model)
    free = set(_INIT_ONLY) | set(getattr(type(saved.model), "WEIGHT_FREE_FIELDS", ()))
    for key in list(theirs) + [k for k in ours if k not in theirs]:
        if key not in free and ours.get(key) != theirs.get(key):
            raise ValueError(f"the model.{key} asked for is {ours.get(key)!r} but checkpoint {path!r} was trained "
                             f"with model.{key} {theirs.get(key)!r} (it shapes the weights: leave out --config "
                             f"and --set model.{key} to use the checkpoint's)")
