"""Kernel profile: each op times posetr against its reference at real model shapes.

Every op contributes a module here whose ``cases(device)`` returns :class:`Case`s.
``python -m posetr bench`` prints them as a table; ``bench/`` times the same cases
with pytest-benchmark.
"""
import importlib
import time
from dataclasses import dataclass
from typing import Callable

import torch

# One module per op, in the order the table lists them.
MODULES = ["ms_deform_attn", "emsda", "lap", "oks"]


@dataclass
class Case:
    """One timed comparison.

    ``setup()`` builds the inputs once; ``posetr(inputs)`` and ``reference(inputs)``
    each run the measured work (forward, or forward and backward) on them.
    """

    op: str
    shape: str
    mode: str
    setup: Callable[[], object]
    posetr: Callable[[object], object]
    reference: Callable[[object], object]


def forward_only(fn):
    """A Case callable running ``fn(*inputs)`` without autograd."""

    def run(inputs):
        with torch.no_grad():
            return fn(*inputs)

    return run


def forward_backward(fn):
    """A Case callable running ``fn(*inputs)`` and its backward with a ones gradient.

    Gradients are assigned, not accumulated, as after ``optimizer.zero_grad(set_to_none=True)``.
    """

    def run(inputs):
        for t in inputs:
            if isinstance(t, torch.Tensor):
                t.grad = None
        out = fn(*inputs)
        out.backward(torch.ones_like(out))
        return out

    return run


def all_cases(device, ops=None):
    """The cases of every op module (or only those named in ``ops``) on ``device``."""
    cases = []
    for name in ops or MODULES:
        cases.extend(importlib.import_module(f"posetr.profile.{name}").cases(device))
    return cases


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_call(fn, inputs, device, repeats, warm_up_s=0.05):
    """Median wall time of ``fn(inputs)`` in seconds.

    Calls ``fn`` until ``warm_up_s`` seconds have passed (at least once) before timing:
    a microsecond call needs thousands of calls before Python's adaptive interpreter,
    the caches and the branch predictors are warm, a second-long call needs one.
    """
    start = time.perf_counter()
    while True:
        fn(inputs)
        synchronize(device)
        if time.perf_counter() - start >= warm_up_s:
            break
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(inputs)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def run(device="cpu", ops=None, repeats=3, print_fn=print):
    """Times every case and prints a table; returns the rows as dicts."""
    rows = []
    header = f"{'op':<22}{'shape':<26}{'mode':<18}{'posetr ms':>12}{'reference ms':>14}{'speed-up':>10}"
    print_fn(f"posetr kernel profile on {device} ({torch.get_num_threads()} threads)")
    print_fn(header)
    print_fn("-" * len(header))
    for case in all_cases(device, ops):
        inputs = case.setup()
        ours = time_call(case.posetr, inputs, device, repeats)
        ref = time_call(case.reference, inputs, device, repeats)
        rows.append(dict(op=case.op, shape=case.shape, mode=case.mode, posetr_s=ours, reference_s=ref))
        print_fn(
            f"{case.op:<22}{case.shape:<26}{case.mode:<18}{ours * 1e3:>12.2f}{ref * 1e3:>14.2f}{ref / ours:>9.1f}x"
        )
    return rows
