"""Shared pieces of the pytest-benchmark suites: each times the Cases of one
``posetr.profile`` module, posetr against its reference, on every device present."""
import pytest
import torch

from posetr.profile import synchronize

IMPLS = pytest.mark.parametrize("impl", ["posetr", "reference"])


def bench_devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def case_params(*modules):
    """Parametrises a test over (device, case) for every Case of the ``modules`` on every device."""
    pairs = [(device, case) for device in bench_devices() for module in modules for case in module.cases(device)]
    ids = [f"{d}-{c.op}-{c.shape}-{c.mode}-{c.dtype}".replace(" ", "_").replace(",", "") for d, c in pairs]
    return pytest.mark.parametrize("device,case", pairs, ids=ids)


def bench_case(benchmark, device, case, impl, inputs=None, fn=None, **pedantic):
    """Times ``case.<impl>`` (or ``fn``, another implementation of the case) on ``inputs``
    (default: a fresh ``case.setup()``), CUDA synchronised inside the timed call;
    ``pedantic`` goes to ``benchmark.pedantic`` (rounds, iterations, ...)."""
    inputs = case.setup() if inputs is None else inputs
    fn = getattr(case, impl) if fn is None else fn

    def call():
        fn(inputs)
        synchronize(device)

    benchmark.group = f"{case.op} {device} {case.shape} {case.mode} {case.dtype}"
    benchmark.pedantic(call, **pedantic)


def bench_shared_setup(benchmark, cache, device, case, impl, **pedantic):
    """:func:`bench_case` on one ``case.setup()`` per (device, op) kept in ``cache`` (a dict), so that the
    posetr and reference runs of an expensive case (two models) share their inputs."""
    key = (device, case.op)
    if key not in cache:
        cache[key] = case.setup()
    bench_case(benchmark, device, case, impl, inputs=cache[key], **pedantic)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
