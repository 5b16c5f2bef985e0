"""Annotation checks of posetr/data/validation.py, on tiny files derived from the COCO / CrowdPose samples:
each error names the file and the image / annotation id (bottom-up, top-down and evaluation share them)."""
import copy
import json
import os

import pytest
from PIL import Image

from posetr.data.coco import CocoKeypoints
from posetr.data.top_down import TopDownKeypoints
from posetr.data.validation import DataError

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
COCO_ANN = os.path.join(SAMPLE, "coco_sample", "annotations", "person_keypoints_sample.json")
CROWD_ANN = os.path.join(SAMPLE, "crowdpose_sample", "annotations", "crowdpose_sample.json")
pytestmark = pytest.mark.skipif(not os.path.isfile(COCO_ANN), reason="needs ../shared/data/coco_sample")


@pytest.fixture(scope="module")
def coco_sample():
    with open(COCO_ANN) as f:
        return json.load(f)


def write(tmp_path, dataset):
    (tmp_path / "images").mkdir(exist_ok=True)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(dataset))
    return str(tmp_path / "images"), str(path)


def first_person(dataset):
    return next(a for a in dataset["annotations"] if not a.get("iscrowd", 0) and max(a["keypoints"]) > 0)


def edit(coco_sample, change):
    dataset = copy.deepcopy(coco_sample)
    change(dataset)
    return dataset


def _set(key, value):
    def change(d):
        first_person(d)[key] = value
    return change


def _keypoint(index, value):
    def change(d):
        first_person(d)["keypoints"][index] = value
    return change


CASES = {
    "short keypoints": (_set("keypoints", [1.0, 2.0, 2] * 16), "has 48 values, expected 3 \\* 17 = 51"),
    "string keypoint": (_keypoint(0, "12"), "finite numbers"),
    "nan keypoint": (_keypoint(0, float("nan")), "finite numbers"),
    "inf bbox": (_set("bbox", [0, 0, float("inf"), 10]), "'bbox'"),
    "nan area": (_set("area", float("nan")), "'area'"),
    "negative area": (_set("area", -5.0), "'area'"),
    "far keypoint": (None, "far outside"),
    "unknown image": (_set("image_id", 123456789), "not in the file's 'images'"),
}


@pytest.mark.parametrize("dataset_class", [CocoKeypoints, TopDownKeypoints])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_annotation_named(tmp_path, coco_sample, case, dataset_class):
    change, message = CASES[case]
    if change is None:  # a labelled keypoint at x = 1e30
        def change(d):
            kpts = first_person(d)["keypoints"]
            j = next(i for i in range(0, len(kpts), 3) if kpts[i + 2] > 0)
            kpts[j] = 1e30
    ann = first_person(coco_sample)
    dataset = edit(coco_sample, change)
    image_dir, ann_file = write(tmp_path, dataset)
    with pytest.raises(DataError, match=message) as info:
        dataset_class(image_dir, ann_file)
    assert isinstance(info.value, ValueError)
    assert ann_file in str(info.value) and f"annotation {ann['id']} " in str(info.value)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["images"][0].pop("file_name"), "has no 'file_name'"),
    (lambda d: d["images"].append(dict(d["images"][0])), "appears more than once"),
    (lambda d: d.__setitem__("images", []), "has no images"),
    (lambda d: d["images"][0].__setitem__("file_name", "../../etc/passwd"), "outside the image folder"),
    (lambda d: d["images"][0].__setitem__("file_name", "/etc/passwd"), "is absolute"),
])
def test_bad_image_entry_named(tmp_path, coco_sample, change, message):
    dataset = edit(coco_sample, change)
    image_dir, ann_file = write(tmp_path, dataset)
    with pytest.raises(DataError, match=message) as info:
        CocoKeypoints(image_dir, ann_file)
    assert ann_file in str(info.value)


def test_crowdpose_without_dataset_says_crowdpose(tmp_path):
    if not os.path.isfile(CROWD_ANN):
        pytest.skip("needs ../shared/data/crowdpose_sample")
    with open(CROWD_ANN) as f:
        dataset = json.load(f)
    image_dir, ann_file = write(tmp_path, dataset)
    with pytest.raises(ValueError, match="data.dataset: crowdpose"):
        CocoKeypoints(image_dir, ann_file, dataset="crowdpose")  # 14 keypoints, but no box_area


def test_decompression_bomb_named(tmp_path, coco_sample, monkeypatch):
    dataset = edit(coco_sample, lambda d: None)
    image_dir, ann_file = write(tmp_path, dataset)
    name = dataset["images"][0]["file_name"]
    Image.new("RGB", (64, 64)).save(os.path.join(image_dir, name), format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 4096 pixels > 2 * 10: PIL raises its bomb error
    ds = CocoKeypoints(image_dir, ann_file)
    with pytest.raises(RuntimeError, match=name):
        ds.load_image(dataset["images"][0]["id"])


def test_real_samples_still_load():
    ds = CocoKeypoints(os.path.dirname(COCO_ANN).replace("annotations", "images"), COCO_ANN)
    assert len(ds) == 4 and ds[0][1]["keypoints"].shape[1:] == (17, 3)


@pytest.mark.parametrize("kind", ["bottom_up", "top_down"])
@pytest.mark.parametrize("area", [float("nan"), -1.0])
def test_eval_ground_truth_validated(tmp_path, coco_sample, kind, area):
    """#14 item 4: evaluation's ground truth (the eval dataset's ``coco``, fed to COCOeval) is checked too."""
    from posetr.config import DataConfig
    from posetr.data.build import build_dataset

    ann = first_person(coco_sample)
    dataset = edit(coco_sample, _set("area", area))
    (tmp_path / "annotations").mkdir()
    write(tmp_path, dataset)
    os.replace(tmp_path / "ann.json", tmp_path / "annotations" / "person_keypoints_val.json")
    with pytest.raises(DataError, match=f"annotation {ann['id']} \\(image {ann['image_id']}\\): 'area'"):
        build_dataset(DataConfig(), root=str(tmp_path), split="val", train=False, kind=kind)
