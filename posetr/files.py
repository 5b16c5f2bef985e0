"""Files written whole or not at all: a temporary file in the target's folder (``.<name>-*.tmp``), flushed
and fsynced, then ``os.replace`` onto the target and the folder fsynced, so the path always holds either the
previous or the new complete file. The file gets the mode a plain ``open`` would give (``0o666 & ~umask``);
temporary files a killed write left behind are removed by the next write of the same path. Checkpoints,
``metrics.json`` / ``results.json`` and ``predictions.json`` are written this way (the bench's report has its own
stdlib-only writer: it runs where posetr is not installed).
"""
from __future__ import annotations

import glob
import json
import os
import tempfile
from typing import IO, Callable, Sequence


def _tmp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale_tmp(path: str, extra_patterns: Sequence[str]) -> None:
    folder = os.path.dirname(path)
    for pattern in (glob.escape(_tmp_prefix(path)) + "*.tmp", *extra_patterns):
        for stale in glob.glob(os.path.join(glob.escape(folder), pattern)):
            try:
                os.remove(stale)
            except FileNotFoundError:
                pass


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: str, write: Callable[[IO[bytes]], None], *, stale_patterns: Sequence[str] = ()) -> None:
    """``write(f)`` into a temporary binary file, then moved onto ``path`` (module docstring); its folder is
    created if needed. ``stale_patterns``: more glob patterns (in the folder) of old temporary files to remove.

    Raises:
        OSError: the folder cannot be written (the previous file at ``path`` is left as it was); anything
            ``write`` raises (the temporary file is removed).
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    _remove_stale_tmp(path, stale_patterns)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_tmp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp creates 0o600
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def write_json(path: str, data, *, indent: int | None = None, newline: bool = False) -> None:
    """``data`` as JSON at ``path``, atomically (:func:`write_atomically`); ``newline`` ends it with one."""
    text = json.dumps(data, indent=indent) + ("\n" if newline else "")
    write_atomically(path, lambda f: f.write(text.encode()))
