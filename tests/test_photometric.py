"""PhotometricDistortion: mmpose 0.x's uint8 version (Poseur) and mmdet 2.x's float version (PETR), with
scripted random draws: the order of the draws, each step's arithmetic, and the quirks (mmpose's BGR2HSV of
an RGB image and its no-op channel swap; mmdet's BGR channel order)."""
import cv2
import numpy as np
import pytest

from posetr.data.photometric import PhotometricDistortion


class Scripted:
    """numpy.random stand-in returning scripted values and recording the calls."""

    def __init__(self, values):
        self.values, self.calls = list(values), []

    def _next(self, name, *args):
        self.calls.append((name, args))
        return self.values.pop(0)

    def randint(self, *args):
        return self._next("randint", *args)

    def uniform(self, *args):
        return self._next("uniform", *args)

    def permutation(self, *args):
        return np.asarray(self._next("permutation", *args))


def _image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def _clip(values):
    return np.clip(values, 0, 255).astype(np.uint8)


def test_mmpose_style_steps_draw_order_and_quirks():
    image = _image()
    # brightness +40, contrast first (mode 1) x1.2, saturation and hue (hsv_mode 3) x0.8 / -18, swap drawn
    rng = Scripted([1, 40.0, 1, 1, 1.2, 3, 0.8, -18, 1, [2, 0, 1]])
    out = PhotometricDistortion(style="mmpose", rng=rng)(image)
    assert rng.calls == [("randint", (2,)), ("uniform", (-32, 32)), ("randint", (2,)), ("randint", (2,)),
                         ("uniform", (0.5, 1.5)), ("randint", (4,)), ("uniform", (0.5, 1.5)), ("randint", (-18, 18)),
                         ("randint", (2,)), ("permutation", (3,))] and not rng.values
    step = _clip(_clip(image.astype(np.float32) + 40).astype(np.float32) * 1.2)
    hsv = cv2.cvtColor(step, cv2.COLOR_BGR2HSV)  # mmpose converts the RGB image as if it were BGR
    hsv[..., 1] = _clip(hsv[..., 1].astype(np.float32) * 0.8)
    hsv[..., 0] = (hsv[..., 0].astype(int) - 18) % 180
    expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)  # and the channel swap is discarded
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    honest = cv2.cvtColor(step, cv2.COLOR_RGB2HSV)
    honest[..., 1] = _clip(honest[..., 1].astype(np.float32) * 0.8)
    honest[..., 0] = (honest[..., 0].astype(int) - 18) % 180
    assert not np.array_equal(out, cv2.cvtColor(honest, cv2.COLOR_HSV2RGB))


def test_mmpose_style_contrast_last_and_no_hsv():
    image = _image()
    rng = Scripted([0, 0, 0, 1, 0.5, 0])  # no brightness, mode 0, hsv_mode 0, contrast x0.5, no swap
    out = PhotometricDistortion(style="mmpose", rng=rng)(image)
    assert np.array_equal(out, _clip(image.astype(np.float32) * 0.5)) and not rng.values
    np.random.seed(0)
    shifts = {PhotometricDistortion(style="mmpose").rng.randint(-18, 18) for _ in range(2000)}
    assert min(shifts) == -18 and max(shifts) == 17  # numpy's exclusive upper bound, as in mmpose


def test_mmdet_style_equals_mmdet_on_the_bgr_image():
    image = _image()
    # brightness +10.5, mode 0, saturation x1.3, hue +20 degrees, contrast x0.7 last, channel swap [2, 0, 1]
    values = [1, 10.5, 0, 1, 1.3, 1, 20.0, 1, 0.7, 1, [2, 0, 1]]
    rng = Scripted(values)
    out = PhotometricDistortion(style="mmdet", rng=rng)(image)
    assert [c[0] for c in rng.calls] == ["randint", "uniform", "randint", "randint", "uniform", "randint", "uniform",
                                         "randint", "uniform", "randint", "permutation"] and not rng.values
    bgr = image[..., ::-1].astype(np.float32) + 10.5  # mmdet 2.x on its BGR image
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    hsv[..., 1] *= 1.3
    hsv[..., 0] += 20.0
    hsv[..., 0][hsv[..., 0] > 360] -= 360
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 0.7
    bgr = bgr[..., [2, 0, 1]]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, bgr[..., ::-1], rtol=1e-5, atol=1e-3)
    brighten = PhotometricDistortion(style="mmdet", rng=Scripted([1, 30.0, 0, 0, 0, 0, 0]))
    bright = brighten(np.full((2, 2, 3), 250, np.uint8))
    np.testing.assert_allclose(bright, 280.0, rtol=1e-5)  # no clipping in mmdet's float version


def test_bad_input():
    with pytest.raises(ValueError, match="style must be one of"):
        PhotometricDistortion(style="torchvision")
    with pytest.raises(ValueError, match="must be uint8"):
        PhotometricDistortion()(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        PhotometricDistortion(style="mmdet")(np.zeros((4, 4)))
