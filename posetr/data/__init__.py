"""Datasets (COCO, CrowdPose, synthetic), transforms, collate and keypoint metadata."""
