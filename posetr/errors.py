"""posetr's error classes: every error posetr raises on purpose about the user's input, files or run
state derives from :class:`PosetrError`, so the command line prints it as one line
(``posetr <command>: error: ...``; the traceback only with ``--debug`` or ``POSETR_DEBUG=1``)."""
from __future__ import annotations


class PosetrError(RuntimeError):
    """Base class of posetr's own errors (a RuntimeError, so ``except RuntimeError`` still catches them)."""


class CheckpointError(PosetrError):
    """A checkpoint file that cannot be used: unreadable, corrupt or truncated, holding something other than
    tensors and plain containers (never unpickled), or not fitting the model / the run it is loaded into."""


class RunStateError(PosetrError):
    """A request that would do nothing or the wrong thing for the state of a run, e.g. resuming a run that
    already finished, or resuming from a checkpoint that holds weights only."""
