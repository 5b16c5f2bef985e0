import os

import pytest
import torch

SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data():
    """Path of ../shared/data (real COCO, CrowdPose and OCHuman samples); skips where absent."""
    path = os.path.normpath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.skip(f"shared sample data not found at {path}")
    return path


@pytest.fixture
def single_thread():
    """One intra-op thread for the test: tiny models are latency-bound, and OpenMP spin-waiting slows them
    10-50x on a shared, oversubscribed 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def devices():
    """Devices to parametrise over: the CPU always, CUDA marked (skipped without a GPU)."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
