"""Helpers of the crop-geometry tests: a dot painted at a known pixel and its centroid after a warp."""
import numpy as np


def paint_dot(shape, x, y, sigma=2.5):
    """uint8 image with a Gaussian dot of peak 255 at (x, y) (pixel centres at integers)."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    dot = 255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(dot.round().astype(np.uint8)[..., None], 3, axis=2)


def centroid(crop, near, radius=12):
    """Intensity centroid (x, y) of the window around ``near`` in crop pixels."""
    x0, y0 = (int(round(v)) for v in near)
    window = crop[max(y0 - radius, 0): y0 + radius + 1, max(x0 - radius, 0): x0 + radius + 1, 0].astype(float)
    ys, xs = np.mgrid[max(y0 - radius, 0): y0 + radius + 1, max(x0 - radius, 0): x0 + radius + 1]
    ys, xs = ys[: window.shape[0], : window.shape[1]], xs[: window.shape[0], : window.shape[1]]
    return np.array([(window * xs).sum(), (window * ys).sum()]) / window.sum()
