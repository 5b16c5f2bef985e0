"""Kernel profile: each op times posetr against its reference at real model shapes.

Every op contributes a module here whose ``cases(device, quick=False)`` returns :class:`Case`s
(``quick``: tiny shapes that run in milliseconds, for checking the profile itself, not for
numbers). ``python -m posetr bench`` prints them as a table and, with ``--json``, writes them
with achieved bandwidth (see :func:`pass_bytes`) against a measured device copy
(:func:`copy_bandwidth`); ``bench/`` times the same cases with pytest-benchmark.

Modules: the kernel ops of ``KERNEL_MODULES``, then one training step per model: every module
here whose name ends in ``_step`` (``petr_step``, ...), so a new model's step joins the profile
by adding its module.
"""
import importlib
import pkgutil
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

# Kernel ops, in the order the table lists them; the training steps follow (step_modules()).
KERNEL_MODULES = ["ms_deform_attn", "emsda", "lap", "oks", "poet_match"]


@dataclass
class Case:
    """One timed comparison.

    ``setup()`` builds the inputs once; ``posetr(inputs)`` and ``reference(inputs)``
    each run the measured work (forward, or forward and backward) on them.
    ``bytes_moved(inputs)`` is the least number of bytes posetr's work must move through
    device memory (:func:`pass_bytes`), or None where no such model is meaningful.
    """

    op: str
    shape: str
    mode: str
    setup: Callable[[], object]
    posetr: Callable[[object], object]
    reference: Callable[[object], object]
    dtype: str = "float32"
    reference_name: str = "reference"
    bytes_moved: Optional[Callable[[object], int]] = None


def step_modules():
    """Names of the training-step modules (``*_step``), sorted."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name.endswith("_step"))


def module_names():
    """Every profile module, in table order: the kernel ops, then the training steps."""
    return KERNEL_MODULES + step_modules()


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


def both_modes(setup, posetr, reference, bytes_model=None, **fields):
    """The "forward" and the "forward+backward" Case of one shape: ``setup(requires_grad)`` builds
    the inputs, ``posetr`` and ``reference`` are called as ``fn(*inputs)``, ``bytes_model(inputs,
    backward)`` gives bytes_moved; ``fields`` fill the rest (op, shape, dtype, reference_name)."""
    return [
        Case(mode=mode, setup=lambda grad=grad: setup(grad), posetr=wrap(posetr), reference=wrap(reference),
             bytes_moved=None if bytes_model is None else (lambda inputs, grad=grad: bytes_model(inputs, grad)),
             **fields)
        for mode, wrap, grad in (("forward", forward_only, False), ("forward+backward", forward_backward, True))
    ]


def tensor_bytes(*tensors):
    """Bytes of the tensors' elements (numel x element size), summed."""
    return sum(t.numel() * t.element_size() for t in tensors)


def pass_bytes(reads, writes, grads=None):
    """The bytes-moved model of the bandwidth column: every input read once, every output
    written once. Forward: ``reads + writes``. With ``grads`` (bytes of the gradients the
    backward writes, one per differentiable input), forward+backward:
    ``(reads + writes) + (reads + writes + grads)``, the backward reading the inputs and
    grad_output (the size of the output) again. Accumulation buffers, zero fills and
    re-reads an implementation adds are not counted: they are what the gap to the copy shows."""
    forward = reads + writes
    return forward if grads is None else forward + reads + writes + grads


def table_name(op: str) -> str:
    """The name ``--ops`` accepts for a table row's op: the op column without its parenthesised mode
    (``"oks_loss (log)"`` -> ``"oks_loss"``)."""
    return op.split(" (", 1)[0]


def all_cases(device, ops=None, quick=False):
    """The cases of every profile module (or only those named in ``ops``: a module name such as ``lap``,
    or an op name the table prints such as ``linear_sum_assignment``) on ``device``.

    Raises:
        ValueError: a name in ``ops`` is neither a profile module nor a table op.
    """
    known = module_names()
    by_module = {name: importlib.import_module(f"posetr.profile.{name}").cases(device, quick=quick)
                 for name in (known if ops is None or any(n not in known for n in ops) else ops)}
    cases = []
    for name in ops or known:
        if name in known:
            cases.extend(by_module[name])
            continue
        matches = [c for module in known for c in by_module[module] if table_name(c.op) == name]
        if not matches:
            table = sorted({table_name(c.op) for module in known for c in by_module[module]})
            raise ValueError(f"unknown op {name!r} for --ops; choose from {', '.join(known)} (profile modules) "
                             f"or {', '.join(table)} (the table's ops)")
        cases.extend(matches)
    return cases


def check_device(device):
    """``device`` as a torch.device on which posetr's kernels can run.

    Raises:
        ValueError: not ``cpu``, ``cuda`` or ``cuda:N``; no such CUDA device; or posetr._C
            built without CUDA kernels (a CPU-only build).
    """
    from posetr._ext import HAS_CUDA_KERNELS, HAS_EXTENSION

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available (torch {torch.__version__}, "
                         f"CUDA {torch.version.cuda or 'not built'})")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if not HAS_CUDA_KERNELS:
        what = "was built without CUDA kernels" if HAS_EXTENSION else "is not built"
        raise ValueError(f"--device {device}: posetr._C {what}; build it with "
                         "`FORCE_CUDA=1 python setup.py build_ext --inplace`")
    return dev


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, inputs, device):
    """Seconds of one ``fn(inputs)``: CUDA events around it on a CUDA device, else the host clock."""
    if torch.device(device).type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(inputs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start = time.perf_counter()
    fn(inputs)
    return time.perf_counter() - start


def time_call(fn, inputs, device, repeats, warm_up_s=0.05):
    """Median time of ``fn(inputs)`` in seconds (CUDA events on a CUDA device).

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
    times = sorted(_timed(fn, inputs, device) for _ in range(repeats))
    return times[len(times) // 2]


def copy_bandwidth(device, nbytes, repeats=10):
    """Measured device-to-device copy bandwidth in bytes per second, counting the bytes read
    and the bytes written (2 x ``nbytes`` per copy): the ceiling the bandwidth column is read against."""
    src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = time_call(lambda _: dst.copy_(src), None, device, repeats)
    return 2 * nbytes / seconds


def run(device="cpu", ops=None, repeats=3, print_fn=print, quick=False, json_path=None):
    """Times every case and prints a table; returns the report (:mod:`posetr.profile.report`).

    A case that raises is recorded under ``errors`` and the next case runs. With
    ``json_path`` the report is rewritten after every case, so a run stopped early
    keeps what it measured.

    Raises:
        ValueError: a bad ``device`` (:func:`check_device`) or ``ops`` name.
    """
    from posetr.profile import report

    dev = check_device(device)
    warm_up_s = 0.0 if quick else 0.05
    cases = all_cases(device, ops, quick=quick)
    copy_bytes = (4 << 20) if quick else ((1 << 30) if dev.type == "cuda" else (128 << 20))
    copy = copy_bandwidth(device, copy_bytes)
    result = report.new_report(device, repeats=repeats, quick=quick, copy_bandwidth=copy)
    print_fn(f"posetr kernel profile on {report.device_label(result)} ({torch.get_num_threads()} threads), "
             f"device copy {copy / 1e9:.1f} GB/s")
    header = (f"{'op':<22}{'shape':<34}{'mode':<18}{'dtype':<10}{'posetr ms':>12}{'reference ms':>14}"
              f"{'speed-up':>10}{'GB/s':>9}{'of copy':>9}")
    print_fn(header)
    print_fn("-" * len(header))
    for case in cases:
        label = f"{case.op:<22}{case.shape:<34}{case.mode:<18}{case.dtype:<10}"
        try:
            inputs = case.setup()
            ours = time_call(case.posetr, inputs, device, repeats, warm_up_s)
            ref = time_call(case.reference, inputs, device, repeats, warm_up_s)
            row = report.add_row(result, case, ours, ref, case.bytes_moved(inputs) if case.bytes_moved else None)
        except Exception as exc:  # one failing case (a kernel error, out of memory) must not hide the rest
            message = report.add_error(result, case, exc)
            print_fn(f"{label}ERROR {message}")
        else:
            gbps = "-" if row["posetr_GBps"] is None else f"{row['posetr_GBps']:.1f}"
            frac = "-" if row["copy_fraction"] is None else f"{100 * row['copy_fraction']:.0f}%"
            print_fn(f"{label}{ours * 1e3:>12.3f}{ref * 1e3:>14.3f}{row['speedup']:>9.1f}x{gbps:>9}{frac:>9}")
        finally:
            inputs = None
        if json_path:
            report.write_json(json_path, result)
    print_fn(f"posetr bench: {len(result['rows'])} cases timed, {len(result['errors'])} failed"
             + (f"; JSON in {json_path}" if json_path else ""))
    return result
