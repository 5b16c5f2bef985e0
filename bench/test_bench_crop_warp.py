"""The top-down crop warp (one person box of a real 640x425 COCO image -> 256x192 / 384x288, rotated 25
degrees, bilinear): OpenCV ``warpAffine`` (what posetr uses) vs Pillow ``Image.transform(AFFINE)`` with the
same geometry (the matrix shifted by half a pixel for Pillow's pixel-corner convention, see
tests/test_top_down_data.py::test_warp_pixel_centre_conventions).

Run: python -m pytest bench/test_bench_crop_warp.py --benchmark-json=bench/results/crop_warp.json
"""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from posetr.data.crop_geometry import box_to_center_scale, crop_affine_matrix

IMAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                     "coco_sample", "images", "000000000785.jpg")
SHIFT = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])


def _setup(size):
    if not os.path.isfile(IMAGE):
        pytest.skip(f"sample image not found at {IMAGE}")
    with Image.open(IMAGE) as im:
        pil = im.convert("RGB")
    h, w = size
    center, scale = box_to_center_scale([280, 40, 230, 350], aspect_ratio=w / h)
    affine = crop_affine_matrix(center, scale, rotation=25.0, output_size=(w, h))
    corners = tuple((SHIFT @ np.linalg.inv(np.vstack([affine, [0, 0, 1]])) @ np.linalg.inv(SHIFT))[:2].ravel())
    return pil, np.asarray(pil), affine, corners, (w, h)


@pytest.mark.parametrize("size", [(256, 192), (384, 288)], ids=["256x192", "384x288"])
@pytest.mark.parametrize("library", ["opencv", "pillow"])
def test_crop_warp(benchmark, library, size):
    pil, pixels, affine, corners, out = _setup(size)
    benchmark.group = f"crop warp {size[0]}x{size[1]}"
    if library == "opencv":
        benchmark(cv2.warpAffine, pixels, affine, out, flags=cv2.INTER_LINEAR)
    else:
        benchmark(pil.transform, out, Image.Transform.AFFINE, corners, resample=Image.Resampling.BILINEAR)


def alternated(rounds: int = 15, calls: int = 20) -> None:
    """Prints best and median microseconds per warp of OpenCV (1 and 2 threads) and Pillow, measured in
    turn within each round (loaded machines drift: compare within one run)."""
    import time

    for size in [(256, 192), (384, 288)]:
        pil, pixels, affine, corners, out = _setup(size)
        fns = {"opencv 1 thread": (1, lambda: cv2.warpAffine(pixels, affine, out, flags=cv2.INTER_LINEAR)),
               "opencv 2 threads": (2, lambda: cv2.warpAffine(pixels, affine, out, flags=cv2.INTER_LINEAR)),
               "pillow": (1, lambda: pil.transform(out, Image.Transform.AFFINE, corners,
                                                   resample=Image.Resampling.BILINEAR))}
        times = {name: [] for name in fns}
        for _ in range(rounds):
            for name, (threads, fn) in fns.items():
                cv2.setNumThreads(threads)
                fn()
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                times[name].append((time.perf_counter() - start) / calls * 1e6)
        print(f"{size[0]}x{size[1]}: " + ", ".join(
            f"{name} best {min(t):.0f} us median {np.median(t):.0f} us" for name, t in times.items()))


if __name__ == "__main__":  # python bench/test_bench_crop_warp.py
    alternated()
