"""What a training run leaves in its output directory besides checkpoints, and how it shows progress.

:class:`RunRecords` writes ``config.yaml`` (the resolved config), ``train.log`` (what the console shows:
everything printed to stdout / stderr while the run is active, each progress bar as its final line),
``epochs.jsonl`` (one JSON object per epoch: losses, lr, seconds, and the COCOeval metrics when evaluated;
COCOeval's "undefined" -1 as null) and, where the optional ``tensorboard`` package is installed,
TensorBoard event files under ``tensorboard/``. :func:`progress` is tqdm on a terminal and plain lines
otherwise, so a redirected log is not flooded with progress-bar updates.
"""
from __future__ import annotations

import json
import os
import sys
import time

import yaml
from tqdm import tqdm

from posetr.config import Config, config_to_dict

CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"
EPOCHS_FILE = "epochs.jsonl"
TENSORBOARD_DIR = "tensorboard"


def prepare_output_dir(path: str, *, what: str = "output directory") -> str:
    """Creates ``path`` (and its parents) before any work starts; returns its absolute path.

    Raises:
        NotADirectoryError: ``path`` (or a parent) is a file. PermissionError: it cannot be written.
    """
    path = os.path.abspath(path)
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise NotADirectoryError(f"{what} {path!r}: {parent!r} is a file, not a directory")
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path!r} is not writable")
    return path


class _PlainProgress:
    """A tqdm stand-in that prints ``desc: i/total (postfix)`` lines about every tenth of the way."""

    def __init__(self, iterable, *, desc: str, total: int | None, stream):
        self.iterable, self.desc, self.total, self.stream = iterable, desc, total, stream
        self.every = max(1, total // 10) if total else 50
        self.postfix = ""

    def set_postfix(self, **values):
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def __iter__(self):
        start = time.perf_counter()
        count = 0
        for item in self.iterable:
            yield item
            count += 1
            if count % self.every == 0 or count == self.total:
                of = f"/{self.total}" if self.total else ""
                extra = f", {self.postfix}" if self.postfix else ""
                if self.stream is not None:
                    print(f"{self.desc}: {count}{of} ({time.perf_counter() - start:.0f} s{extra})",
                          file=self.stream, flush=True)


def progress(iterable, *, desc: str, enabled: bool = True):
    """``iterable`` with progress shown on stderr: a tqdm bar on a terminal, plain lines about every tenth
    of the way when stderr is redirected, nothing when not ``enabled`` (e.g. on processes other than the
    main one). The result has tqdm's ``set_postfix``."""
    if enabled and sys.stderr.isatty():
        return tqdm(iterable, desc=desc, dynamic_ncols=True)
    try:
        total = len(iterable)
    except TypeError:
        total = None
    return _PlainProgress(iterable, desc=desc, total=total, stream=sys.stderr if enabled else None)


class _Tee:
    """A text stream that writes to ``stream`` and to ``log``; a progress bar's ``\\r`` redraws reach the log
    as the bar's last state only."""

    def __init__(self, stream, log):
        self._stream, self._log, self._line = stream, log, ""

    def write(self, text: str) -> int:
        self._stream.write(text)
        *complete, rest = (self._line + text).split("\n")
        for line in complete:
            self._log.write(line.rstrip("\r").rsplit("\r", 1)[-1] + "\n")
        self._line = rest.rstrip("\r").rsplit("\r", 1)[-1]
        self._log.flush()
        return len(text)

    def flush(self):
        self._stream.flush()

    def close_line(self):
        if self._line:
            self._log.write(self._line + "\n")
            self._line = ""

    def __getattr__(self, name):  # isatty, fileno, encoding, ... of the console stream
        return getattr(self._stream, name)


def _tensorboard_writer(folder: str):
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``folder``, or None without the tensorboard package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(folder)


def _json_value(value):
    return None if isinstance(value, float) and value != value else value  # NaN is not JSON


class RunRecords:
    """The records of one training run in ``output_dir`` (a context manager; inactive when not ``enabled``,
    e.g. on processes other than the main one). Entering prints the output directory, writes
    ``config.yaml`` and starts mirroring the console into ``train.log`` (appended to on resume)."""

    def __init__(self, output_dir: str, cfg: Config, *, enabled: bool = True):
        self.output_dir, self.cfg, self.enabled = os.path.abspath(output_dir), cfg, enabled
        self._log = self._streams = self._writer = None

    def __enter__(self):
        if not self.enabled:
            return self
        with open(os.path.join(self.output_dir, CONFIG_FILE), "w") as f:
            yaml.safe_dump(config_to_dict(self.cfg), f, sort_keys=False)
        self._log = open(os.path.join(self.output_dir, LOG_FILE), "a")
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _Tee(sys.stdout, self._log), _Tee(sys.stderr, self._log)
        print(f"output directory: {self.output_dir} (config.yaml, {LOG_FILE}, {EPOCHS_FILE}, last.pth, best.pth, "
              "metrics.json)", flush=True)
        self._writer = _tensorboard_writer(os.path.join(self.output_dir, TENSORBOARD_DIR))
        return self

    def epoch(self, epoch: int, *, losses: dict, lr: float, seconds: float, metrics: dict | None = None) -> None:
        """Appends epoch ``epoch``'s (0-based) record to ``epochs.jsonl`` (and TensorBoard)."""
        if not self.enabled:
            return
        record = {"epoch": epoch, "lr": lr, "seconds": round(seconds, 3),
                  "losses": {k: _json_value(v) for k, v in losses.items()}}
        if metrics:
            record["metrics"] = {k: _json_value(v) for k, v in metrics.items()}
        with open(os.path.join(self.output_dir, EPOCHS_FILE), "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for name, value in losses.items():
                self._writer.add_scalar(f"train/{name}", value, epoch)
            self._writer.add_scalar("train/lr", lr, epoch)
            for name, value in (metrics or {}).items():
                if value is not None:
                    self._writer.add_scalar(f"eval/{name}", value, epoch)
            self._writer.flush()

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        for tee in (sys.stdout, sys.stderr):
            if isinstance(tee, _Tee):
                tee.close_line()
        sys.stdout, sys.stderr = self._streams
        self._log.close()
        if self._writer is not None:
            self._writer.close()
        return False
