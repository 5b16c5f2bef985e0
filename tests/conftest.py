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


def devices():
    """Devices to parametrise over: the CPU always, CUDA marked (skipped without a GPU)."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
