"""Keypoint metadata for COCO-17 and CrowdPose-14: names, OKS sigmas, flip pairs and skeletons.

All indices are 0-based positions in the dataset's keypoint order (the order of the ``keypoints``
list in the annotation file's ``categories``).

- ``*_SIGMAS``: per-keypoint OKS falloff constants, as in pycocotools ``COCOeval`` (COCO) and the
  CrowdPose evaluation toolkit (CrowdPose).
- ``*_FLIP_PAIRS``: (left, right) index pairs swapped by a horizontal flip.
- ``*_UPPER_BODY``: the upper-body joints of the top-down half-body augmentation (mmpose's
  ``upper_body_ids``; the other joints are the lower body).
- ``*_SKELETON``: limb (a, b) index pairs, for drawing. The CrowdPose annotation files carry a copy of
  COCO's 1-based skeleton that does not fit the 14-keypoint order; ``CROWDPOSE_SKELETON`` is the
  CrowdPose limb set (as drawn by the CrowdPose and MMPose tools).

``keypoint_info("coco")`` / ``keypoint_info("crowdpose")`` returns all of it as a ``KeypointInfo``.
"""
from __future__ import annotations

from typing import NamedTuple

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)
COCO_UPPER_BODY: tuple[int, ...] = tuple(range(11))  # nose .. right_wrist
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

CROWDPOSE_KEYPOINT_NAMES: tuple[str, ...] = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
)
CROWDPOSE_SIGMAS: tuple[float, ...] = (
    0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079,
)
CROWDPOSE_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11),
)
CROWDPOSE_UPPER_BODY: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 12, 13)  # arms, head, neck
CROWDPOSE_SKELETON: tuple[tuple[int, int], ...] = (
    (10, 8), (8, 6), (11, 9), (9, 7), (6, 7), (0, 6), (1, 7), (0, 1), (0, 2), (1, 3),
    (2, 4), (3, 5), (12, 13), (0, 13), (1, 13),
)


class KeypointInfo(NamedTuple):
    """Keypoint metadata of one dataset (see the module docstring for the meaning of each field)."""

    names: tuple[str, ...]
    sigmas: tuple[float, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    upper_body_ids: tuple[int, ...] = ()

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def flip_index(self) -> list[int]:
        """Permutation ``p`` with ``flipped[..., k, :] = kpts[..., p[k], :]`` after a horizontal flip."""
        index = list(range(len(self.names)))
        for left, right in self.flip_pairs:
            index[left], index[right] = right, left
        return index


_DATASETS: dict[str, KeypointInfo] = {
    "coco": KeypointInfo(COCO_KEYPOINT_NAMES, COCO_SIGMAS, COCO_FLIP_PAIRS, COCO_SKELETON, COCO_UPPER_BODY),
    "crowdpose": KeypointInfo(
        CROWDPOSE_KEYPOINT_NAMES, CROWDPOSE_SIGMAS, CROWDPOSE_FLIP_PAIRS, CROWDPOSE_SKELETON, CROWDPOSE_UPPER_BODY
    ),
}


def keypoint_info(dataset: str) -> KeypointInfo:
    """Keypoint metadata by dataset name: ``"coco"`` (also OCHuman, which uses COCO's order) or ``"crowdpose"``.

    Raises:
        ValueError: unknown ``dataset``.
    """
    try:
        return _DATASETS[dataset.lower()]
    except KeyError:
        raise ValueError(
            f"keypoint_info: dataset must be one of {sorted(_DATASETS)}, got {dataset!r}"
        ) from None


def mirror_keypoints(keypoints, flip_index, *, mirror_sum: float):
    """Keypoints seen in a horizontally mirrored view, in the original view: joints permuted by
    ``flip_index`` (:meth:`KeypointInfo.flip_index`, over dim -2) and x -> ``mirror_sum`` - x (image pixels:
    the width; normalised crop coordinates: 1 or (W - 1) / W). Other channels (y, scores) are kept.

    Args:
        keypoints (Tensor[..., K, C], C >= 1): x first.

    Returns:
        a new Tensor of the same shape; mirroring twice is the identity.
    """
    out = keypoints[..., list(flip_index), :].clone()
    out[..., 0] = mirror_sum - out[..., 0]
    return out
