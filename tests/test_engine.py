"""Engine: COCOeval wiring, checkpoints, exact resume, optimizer groups, config loading (stand-in model)."""
import copy
import json
import os

import pytest
import torch
from torch.utils.data import DataLoader

from posetr.config import Config, config_from_dict, load_config
from posetr.data.build import build_dataset
from posetr.data.collate import collate
from posetr.engine import checkpoint as checkpoint_module
from posetr.engine.checkpoint import load_checkpoint, save_checkpoint
from posetr.engine.evaluate import coco_keypoint_eval, evaluate
from posetr.engine.train import build_optimizer, build_scheduler, train
from standin_petr import OracleModel, TinyPostProcessor, build_tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gt_results(coco):
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
            for a in coco.dataset["annotations"] if a["num_keypoints"] > 0]


@pytest.mark.parametrize("folder,dataset", [("coco_sample", "coco"), ("crowdpose_sample", "crowdpose")])
def test_ap_is_one_when_predictions_equal_ground_truth(shared_data, folder, dataset):
    cfg = Config().data
    cfg.dataset = dataset
    ds = build_dataset(cfg, root=os.path.join(shared_data, folder), split="val", train=False)
    metrics, _ = coco_keypoint_eval(ds.coco, _gt_results(ds.coco), sigmas=ds.info.sigmas)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)
    assert coco_keypoint_eval(ds.coco, [], sigmas=ds.info.sigmas)[0]["AP"] == 0.0


def test_evaluate_through_model_and_postprocessor(shared_data, tmp_path):
    """Ground truth fed through the contract (normalised keypoints -> postprocessor -> original pixels)."""
    cfg = Config().data
    cfg.test_size, cfg.max_size = 320, 480
    ds = build_dataset(cfg, root=os.path.join(shared_data, "coco_sample"), split="val", train=False)
    loader = DataLoader(ds, batch_size=3, collate_fn=collate)
    model = OracleModel([targets for _, _, targets in loader])
    metrics = evaluate(model, TinyPostProcessor(), loader, device=torch.device("cpu"), output_dir=str(tmp_path))
    assert metrics["AP"] > 0.99
    assert json.load(open(tmp_path / "metrics.json"))["AP"] == metrics["AP"]
    assert len(json.load(open(tmp_path / "results.json"))) == 8 * len(ds)


def _tiny_cfg(**train):
    cfg = Config()
    cfg.data.test_size, cfg.data.max_size, cfg.data.train_sizes = 96, 128, [64, 96]
    cfg.data.num_workers, cfg.data.synthetic_images = 0, 4
    cfg.train.epochs, cfg.train.device = 2, "cpu"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    model, _, _ = build_tiny(Config().model)
    opt = torch.optim.AdamW(model.parameters())
    path = str(tmp_path / "ck.pth")
    save_checkpoint(path, model=model, optimizer=opt, scheduler=None, epoch=3, config={"a": 1})
    assert os.listdir(tmp_path) == ["ck.pth"]

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, model=model, optimizer=opt, scheduler=None, epoch=4, config={})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ck.pth"]  # the old checkpoint survives, no temp file left
    assert load_checkpoint(path, model=model)["epoch"] == 3
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        load_checkpoint(str(tmp_path / "bad.pth"), model=model)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "none.pth"), model=model)


def test_resume_continues_exactly(tmp_path):
    cfg = _tiny_cfg(epochs=2, lr_drop=1)
    full = train(copy.deepcopy(cfg), output_dir=str(tmp_path / "full"), build_model=build_tiny)
    one = copy.deepcopy(cfg)
    one.train.epochs = 1
    train(one, output_dir=str(tmp_path / "half"), build_model=build_tiny)
    resumed = train(copy.deepcopy(cfg), output_dir=str(tmp_path / "half"), build_model=build_tiny,
                    resume=str(tmp_path / "half" / "last.pth"))
    a = torch.load(tmp_path / "full" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "half" / "last.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["scheduler"] == b["scheduler"]
    assert full == resumed
    assert a["config"]["train"]["epochs"] == 2


def test_bf16_autocast_trains(tmp_path):
    metrics = train(_tiny_cfg(epochs=1, amp=True), output_dir=str(tmp_path), build_model=build_tiny)
    assert "AP" in metrics


def test_optimizer_groups():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Linear(2, 2)
            self.sampling_offsets = torch.nn.Linear(2, 2)
            self.head = torch.nn.Linear(2, 2)

    opt = build_optimizer(M(), Config().train)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone": pytest.approx(2e-5), "linear_proj": pytest.approx(2e-5), "other": 2e-4}
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups)


def test_lr_milestones_give_several_drops():
    cfg = Config().train
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg.lr_milestones = [2, 3]  # POET's paper: x0.1 after 200 and after 250 epochs
    scheduler = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.01])
    cfg.lr_milestones = []
    assert isinstance(build_scheduler(opt, cfg), torch.optim.lr_scheduler.StepLR)
    cfg.lr_milestones = [5, 3]
    with pytest.raises(ValueError, match="train.lr_milestones must be ascending"):
        build_scheduler(opt, cfg)


def test_config_files_load():
    for name in ("petr_r50_coco.yaml", "petr_overfit_coco_sample.yaml", "poet_r50_coco.yaml",
                 "poet_r50_coco_paper.yaml", "poet_overfit_coco_sample.yaml"):
        cfg = load_config(os.path.join(REPO, "configs", name))
        assert cfg.model.num_keypoints == 17
    assert load_config(os.path.join(REPO, "configs", "petr_r50_coco.yaml")).train.lr == 2e-4


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lrr'\] in section 'train'"):
        config_from_dict({"train": {"lrr": 1.0}})
    with pytest.raises(ValueError, match="unknown key"):
        config_from_dict({"optimizer": {}})
    with pytest.raises(ValueError, match="unknown key"):
        config_from_dict({"model": {"depth": 50}})
    with pytest.raises(ValueError, match="train.epochs must be int"):
        config_from_dict({"train": {"epochs": "ten"}})
    with pytest.raises(ValueError, match="section 'data' must be a mapping"):
        config_from_dict({"data": [1, 2]})
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0
    assert config_from_dict({"model": {"pretrained_backbone": "r50.pth"}}).model.pretrained_backbone == "r50.pth"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(str(bad))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
