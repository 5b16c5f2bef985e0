"""Top-down crop geometry against mmpose 0.x's three-point construction of the affine."""
import math

import numpy as np
import pytest
import torch

from posetr.data.crop_geometry import box_to_center_scale, crop_affine_matrix, crop_to_image


def _mmpose_affine(center, scale, rot, output_size):
    """mmpose ``get_affine_transform`` (shift 0), rebuilt from its description: three point pairs."""
    src_w, (dst_w, dst_h) = scale[0], output_size
    r = math.radians(rot)

    def rotate(p):
        return np.array([p[0] * math.cos(r) - p[1] * math.sin(r), p[0] * math.sin(r) + p[1] * math.cos(r)])

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = np.zeros((3, 2))
    dst = np.zeros((3, 2))
    src[0], src[1] = center, center + rotate([0, src_w * -0.5])
    dst[0], dst[1] = [dst_w * 0.5, dst_h * 0.5], np.array([dst_w * 0.5, dst_h * 0.5]) + [0, dst_w * -0.5]
    src[2], dst[2] = third(src[0], src[1]), third(dst[0], dst[1])
    # solve dst = A @ [src, 1]
    return np.linalg.solve(np.concatenate([src, np.ones((3, 1))], 1), dst).T


@pytest.mark.parametrize("rot", [0.0, 30.0, -65.0])
def test_affine_matches_mmpose_three_points(rot):
    center, scale = np.array([120.0, 80.0]), np.array([90.0, 120.0])
    np.testing.assert_allclose(crop_affine_matrix(center, scale, rotation=rot, output_size=(192, 256)),
                               _mmpose_affine(center, scale, rot, (192, 256)), atol=1e-9)


def test_box_to_center_scale_fixes_aspect_and_pads():
    center, scale = box_to_center_scale([10, 20, 30, 100], aspect_ratio=0.75)
    np.testing.assert_allclose(center, [25, 70])
    np.testing.assert_allclose(scale, [75 * 1.25, 100 * 1.25])
    _, scale = box_to_center_scale([0, 0, 90, 60], aspect_ratio=0.75)
    np.testing.assert_allclose(scale, [90 * 1.25, 120 * 1.25])
    with pytest.raises(ValueError, match="finite"):
        box_to_center_scale([0, float("nan"), 1, 1], aspect_ratio=0.75)


def test_crop_to_image_inverts_the_unrotated_affine():
    center, scale = np.array([120.0, 80.0]), np.array([90.0, 120.0])
    A = crop_affine_matrix(center, scale, rotation=0.0, output_size=(192, 256))
    pts = np.random.default_rng(0).uniform(0, 200, size=(17, 2))
    crop = pts @ A[:, :2].T + A[:, 2]
    back = crop_to_image(torch.from_numpy(crop / [192, 256])[None], torch.from_numpy(center[None]), torch.from_numpy(scale[None]))
    np.testing.assert_allclose(back[0].numpy(), pts, atol=1e-9)
