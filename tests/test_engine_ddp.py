"""Two gloo processes on the CPU train the stand-in through DistributedDataParallel."""
import os
import socket

import torch
import torch.multiprocessing as mp

from posetr.config import Config
from standin_petr import build_tiny, ddp_worker


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_training(tmp_path):
    cfg = Config()
    cfg.data.test_size, cfg.data.max_size, cfg.data.augment = 96, 128, "flip"
    cfg.data.num_workers, cfg.data.synthetic_images, cfg.data.batch_size = 0, 4, 1
    cfg.train.epochs, cfg.train.device = 2, "cpu"
    mp.spawn(ddp_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    for k in a:  # gradients were averaged: both processes hold the same weights
        assert torch.equal(a[k], b[k]), k
    start = build_tiny(Config().model)[0].state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # and they trained
    assert os.path.isfile(tmp_path / "metrics.json") and os.path.isfile(tmp_path / "last.pth")
