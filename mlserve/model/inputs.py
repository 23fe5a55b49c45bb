"""The images that `mlserve predict` and `mlserve bench` send: from the MNIST test split, from image
files, or from a .npy array, always as the model takes them: float32 (N, 28, 28, 1) in [0, 1].

Image files are made to look like MNIST (see `mnist_frame`): grayscale, inverted when the
background is light (MNIST digits are white on black, a scanned or drawn digit is usually black on
white), then cropped to the digit, fitted in 20×20 and centred by its centre of mass in 28×28, as
MNIST itself was made. Shapes are checked here, before anything is sent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mlserve.errors import DataError, NotFoundError, UsageError

SIDE = 28
DIGIT_BOX = 20  # MNIST fits each digit in 20×20, then centres it in 28×28 by its centre of mass
INK_THRESHOLD = 0.25  # crop to the pixels with at least this share of the strongest ink
MAX_IMAGES = 10_000  # a predict call is for looking at answers; bench has its own batch limits


@dataclass
class InputBatch:
    """Images ready to send, and what is known about each one."""

    images: np.ndarray  # float32 (N, 28, 28, 1), [0, 1]
    names: list[str]  # "test[12]", "digit.png", "array.npy[3]"
    labels: list[int | None]  # the true digit where known
    source: str  # for people: where the images came from
    inverted: list[bool] = field(default_factory=list)  # image files whose colours were inverted

    def __len__(self) -> int:
        return len(self.images)


def validate_images(x: np.ndarray, where: str = "images") -> np.ndarray:
    """Any accepted shape and scale as float32 (N, 28, 28, 1) in [0, 1], or DataError.

    Accepted: (28, 28), (N, 28, 28), (N, 28, 28, 1) or (N, 784); uint8 0-255 or float 0-1
    (float values above 1 are taken as 0-255).
    """
    arr = np.asarray(x)
    shape = tuple(arr.shape)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{where}: expected numbers, got dtype {arr.dtype}",
                        hint="save a numeric array: np.save('digits.npy', x.astype('uint8'))")
    if arr.ndim == 2 and shape == (SIDE, SIDE):
        arr = arr[None]
    elif arr.ndim == 2 and shape[1] == SIDE * SIDE:
        arr = arr.reshape(-1, SIDE, SIDE)
    elif arr.ndim == 4 and shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[1:] != (SIDE, SIDE):
        raise DataError(
            f"{where}: shape {shape} is not a batch of 28×28 grayscale images",
            hint="give shape (N, 28, 28), (N, 28, 28, 1) or (N, 784)")
    if len(arr) == 0:
        raise DataError(f"{where}: no images (shape {shape})", hint="give at least one image")
    if len(arr) > MAX_IMAGES:
        raise DataError(f"{where}: {len(arr)} images, more than the {MAX_IMAGES} one predict sends",
                        hint="split the array")
    values = arr.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise DataError(f"{where}: contains NaN or infinite values", hint="clean the array first")
    if values.min() < 0:
        raise DataError(f"{where}: negative pixel values (min {values.min():g})",
                        hint="pixels are uint8 0-255 or float 0-1")
    integer_scale = np.issubdtype(arr.dtype, np.integer) or values.max() > 1.0
    if integer_scale:
        if values.max() > 255:
            raise DataError(f"{where}: pixel values up to {values.max():g}, above 255",
                            hint="pixels are uint8 0-255 or float 0-1")
        values /= 255.0
    return values[..., None]


def from_test_split(index: int = 0, count: int = 3, *, data: str | None = None) -> InputBatch:
    """`count` consecutive test images starting at `index` (as the course does: x_test[0:3])."""
    mnist = _load(data)
    n = len(mnist.x_test)
    if count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    if not 0 <= index < n or index + count > n:
        raise UsageError(f"test images {index}..{index + count - 1} are out of range: the test split "
                         f"has {n} images ({mnist.description})",
                         hint=f"use --index between 0 and {n - count}" if count <= n else "lower --count")
    picks = list(range(index, index + count))
    return _from_split(mnist, picks)


def from_random(count: int, *, seed: int | None = None, data: str | None = None) -> InputBatch:
    """`count` distinct test images picked at random (reproducible with `seed`)."""
    mnist = _load(data)
    n = len(mnist.x_test)
    if not 1 <= count <= n:
        raise UsageError(f"--random must be between 1 and {n} (the test split's size), got {count}")
    picks = sorted(np.random.default_rng(seed).choice(n, size=count, replace=False).tolist())
    return _from_split(mnist, picks)


def _load(data: str | None):
    from mlserve.model.data import load_mnist

    # predict never downloads: it needs a handful of digits, and the sample always has them
    return load_mnist(data, allow_download=False)


def _from_split(mnist, picks: list[int]) -> InputBatch:
    images = validate_images(mnist.x_test[picks], "test split")
    return InputBatch(images, [f"test[{i}]" for i in picks], [int(mnist.y_test[i]) for i in picks],
                      source=f"test split of {mnist.description}")


def from_npy(path: str | Path, labels: Sequence[int] | None = None) -> InputBatch:
    """Images from a .npy file: (N, 28, 28), (N, 28, 28, 1) or (N, 784); uint8 or float 0-1."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no such file: {path}", hint="give the path of a .npy file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path} is not a readable .npy array: {e}",
                        hint="write it with numpy.save") from e
    images = validate_images(array, str(path))
    return InputBatch(images, [f"{path.name}[{i}]" for i in range(len(images))],
                      list(labels) if labels is not None else [None] * len(images), source=str(path))


def from_image_files(paths: Sequence[str | Path]) -> InputBatch:
    """PNG/JPEG (any format Pillow reads) digits, made to look like MNIST (see the module doc)."""
    images, inverted = [], []
    for p in paths:
        image, flipped = load_image_file(p)
        images.append(image)
        inverted.append(flipped)
    return InputBatch(np.stack(images)[..., None], [Path(p).name for p in paths], [None] * len(images),
                      source=", ".join(str(p) for p in paths), inverted=inverted)


def load_image_file(path: str | Path) -> tuple[np.ndarray, bool]:
    """One image file as float32 28×28 in [0, 1], white digit on black; and whether it was inverted."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no such image file: {path}", hint="give the path of a PNG or JPEG file")
    return _read_image(path, str(path))


def load_image_bytes(data: bytes, where: str = "image", max_pixels: int = 4096 * 4096
                     ) -> tuple[np.ndarray, bool]:
    """`load_image_file` for an image held in memory (an upload, a drawing sent by `mlserve ui`).

    `max_pixels` refuses huge images before they are decoded (a small file can claim a vast size).
    """
    import io

    return _read_image(io.BytesIO(data), where, max_pixels)


def _read_image(source, where: str, max_pixels: int | None = None) -> tuple[np.ndarray, bool]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise DataError(f"{where} is {img.width}×{img.height} pixels, more than {max_pixels:,}",
                                hint="send a smaller image: a digit needs no more than a few hundred pixels a side")
            img.load()
            if img.mode in ("RGBA", "LA") or "transparency" in img.info:
                # a transparent background means "paper": composite onto white
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                gray = Image.alpha_composite(background, rgba).convert("L")
            else:
                gray = img.convert("L")
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{where} is not an image Pillow can read: {e}",
                        hint="give a PNG or JPEG file") from e
    pixels = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    light_background = float(np.median(border)) > 127.5
    if light_background:
        pixels = 255.0 - pixels
    if pixels.shape == (SIDE, SIDE):  # already MNIST's frame: taken as it is
        return pixels / 255.0, light_background
    return mnist_frame(pixels), light_background


def mnist_frame(ink: np.ndarray) -> np.ndarray:
    """A white-on-black digit of any size as MNIST frames its digits: float32 28×28 in [0, 1].

    As MNIST's own preprocessing (LeCun et al.): the paper's level (the median of the border) is
    subtracted and the ink stretched to 0..255; the image is cropped to the pixels above 25% of the
    strongest ink; the crop is scaled, keeping its aspect ratio, to fit a 20×20
    box (anti-aliased); and placed in 28×28 so that its centre of mass is the centre.
    """
    from PIL import Image

    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    ink = np.clip(ink - float(np.median(border)), 0.0, None)
    peak = float(ink.max())
    if peak <= 0.0:  # a blank page: nothing to frame
        return np.zeros((SIDE, SIDE), np.float32)
    ink = ink * (255.0 / peak)
    rows = np.flatnonzero((ink > INK_THRESHOLD * 255.0).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD * 255.0).any(axis=0))
    digit = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = digit.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL: (width, height)
    small = np.asarray(Image.fromarray(digit.astype(np.float32), mode="F").resize(size, Image.LANCZOS),
                       dtype=np.float32)
    small = np.clip(small, 0.0, 255.0)
    frame = np.zeros((SIDE, SIDE), np.float32)
    total = float(small.sum())
    ys, xs = np.indices(small.shape)
    cy, cx = ((float((ys * small).sum()) / total, float((xs * small).sum()) / total) if total
              else ((small.shape[0] - 1) / 2, (small.shape[1] - 1) / 2))
    top = int(np.clip(round((SIDE - 1) / 2 - cy), 0, SIDE - small.shape[0]))
    left = int(np.clip(round((SIDE - 1) / 2 - cx), 0, SIDE - small.shape[1]))
    frame[top:top + small.shape[0], left:left + small.shape[1]] = small
    return frame / 255.0
