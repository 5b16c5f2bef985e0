"""Run records: plain progress lines off a terminal, the log keeps a progress bar's last state only,
TensorBoard scalars where the package exists (#17 item 7)."""
import io
import sys
import types

from posetr.config import Config
from posetr.engine import run_records
from posetr.engine.run_records import RunRecords, progress


def test_progress_is_plain_lines_when_not_a_tty(capsys):
    bar = progress(range(20), desc="epoch 0")
    for _ in bar:
        bar.set_postfix(loss="1.0")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("epoch 0: 20/20") and "\r" not in "".join(lines)


def test_log_mirrors_console_without_redraws(tmp_path, monkeypatch):
    written = []

    class Writer:
        def __init__(self, folder):
            written.append(folder)

        def add_scalar(self, name, value, step):
            written.append((name, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with RunRecords(str(tmp_path), Config()) as records:
        sys.stderr.write("\rbar 1/3\rbar 2/3\rbar 3/3\n")
        print("epoch 0: loss 1.0")
        records.epoch(0, losses={"loss": 1.0}, lr=1e-4, seconds=1.0, metrics={"AP": 0.5, "APl": None})
    log = (tmp_path / run_records.LOG_FILE).read_text().splitlines()
    assert log[1:] == ["bar 3/3", "epoch 0: loss 1.0"] and log[0].startswith("output directory")
    assert ("train/loss", 0) in written and ("eval/AP", 0) in written and ("eval/APl", 0) not in written
    assert '"APl": null' in (tmp_path / run_records.EPOCHS_FILE).read_text()
