"""Checkpoints never run code (weights_only), are written atomically with the umask's mode, clean up after a
killed save, and name what does not fit (#14 items 1, 9, 10)."""
import os

import pytest
import torch

from posetr.config import Config, config_to_dict
from posetr.engine.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from posetr.errors import CheckpointError
from standin_petr import build_tiny


def _write_marker(path):
    with open(path, "w") as f:
        f.write("code ran")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (self.marker,))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    model, _, _ = build_tiny(Config().model)
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"model": model.state_dict(), "epoch": 1, "x": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refusing to load checkpoint .*evil.pth") as exc:
        load_checkpoint(str(path), model=model)
    assert "\n" not in str(exc.value)
    assert not marker.exists()


def test_own_checkpoint_is_plain_and_loads(tmp_path):
    model, _, _ = build_tiny(Config().model)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2, 3])
    path = str(tmp_path / "last.pth")
    save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, epoch=2, config=config_to_dict(Config()),
                    best_ap=0.5)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 2 and state["best_ap"] == 0.5 and state["config"]["train"]["lr"] == 2e-4
    assert load_checkpoint(path, model=model, optimizer=opt, scheduler=sched)["epoch"] == 2


def test_mode_follows_umask_and_stale_temp_files_are_removed(tmp_path):
    model, _, _ = build_tiny(Config().model)
    (tmp_path / ".last.pth-killed.tmp").write_bytes(b"x" * 100)
    (tmp_path / ".checkpoint-old.tmp").write_bytes(b"x" * 100)
    old = os.umask(0o027)
    try:
        save_checkpoint(str(tmp_path / "last.pth"), model=model, optimizer=None, scheduler=None, epoch=1, config={})
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == ["last.pth"]
    assert os.stat(tmp_path / "last.pth").st_mode & 0o777 == 0o640


def test_corrupt_truncated_and_mismatched_checkpoints(tmp_path):
    model, _, _ = build_tiny(Config().model)
    path = tmp_path / "ok.pth"
    save_checkpoint(str(path), model=model, optimizer=None, scheduler=None, epoch=1, config={})
    (tmp_path / "trunc.pth").write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*trunc.pth"):
        read_checkpoint(str(tmp_path / "trunc.pth"))
    state = torch.load(path, weights_only=True)
    state["model"]["extra.weight"] = torch.zeros(1)
    del state["model"]["head.bias"]
    state["model"]["head.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(str(tmp_path / "bad.pth"), model=model)
    msg = str(exc.value)
    assert "missing keys: head.bias" in msg and "unexpected keys: extra.weight" in msg
    assert "shape mismatches: head.weight [3, 3] in the checkpoint" in msg
