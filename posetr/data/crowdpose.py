"""CrowdPose keypoint dataset: COCO format with 14 keypoints and no ``area`` (the box w*h stands in,
as in the CrowdPose evaluation toolkit)."""
from __future__ import annotations

from posetr.data.coco import CocoKeypoints


class CrowdPoseKeypoints(CocoKeypoints):
    """:class:`~posetr.data.coco.CocoKeypoints` with ``dataset="crowdpose"`` and box areas."""

    def __init__(self, image_dir: str, ann_file: str, *, transforms=None, keep_images: str = "all"):
        super().__init__(image_dir, ann_file, dataset="crowdpose", transforms=transforms, box_area=True,
                         keep_images=keep_images)
