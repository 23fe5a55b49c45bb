"""MNIST loading, in a fixed order: the user's data, the Keras cache, a Keras download, the offline sample.

This module must stay importable without TensorFlow: the predict client loads the test split through
it. Only the download step imports Keras, inside the function that needs it.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import struct
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlserve import settings
from mlserve.errors import DataError, NotFoundError

SAMPLE_PATH = Path(__file__).parent / "sample" / "mnist_sample.npz"
# The sample is sorted by label; this seed fixes its shuffle so every process (train in one, predict
# in another) sees the same 4,000 / 1,000 split, and `--index 0` names the same digit everywhere.
SAMPLE_SEED = 20240517
SAMPLE_TRAIN = 4000
SAMPLE_WARNING = (
    "using the offline sample shipped with mlserve: 5,000 digits of real MNIST (4,000 train / "
    "1,000 test), not the full 70,000. MNIST: Yann LeCun, Corinna Cortes, Christopher J.C. Burges, "
    "CC BY-SA 3.0. Give the full set with --data or MLSERVE_DATA."
)
# Where keras.datasets.mnist downloads from; checked quickly before a download is tried.
DOWNLOAD_HOST = "storage.googleapis.com"
NETWORK_CHECK_S = 2.0
# `--data sample` (or MLSERVE_DATA=sample) picks the shipped sample directly: no cache, no download.
SAMPLE_KEYWORD = "sample"

IDX_FILES = {
    "x_train": "train-images",
    "y_train": "train-labels",
    "x_test": "t10k-images",
    "y_test": "t10k-labels",
}
_IDX_MAGIC_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_MAGIC_LABELS = 0x00000801  # unsigned bytes, 1 dimension


@dataclass
class MnistData:
    """MNIST images (uint8, N×28×28) and labels (uint8, N), and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # "user", "keras-cache", "download" or "sample"
    description: str  # for people: the kind, the path and the sizes
    path: str | None = None
    # Set when the caller should tell the user something (the sample fallback); the CLI prints it.
    warning: str | None = None
    notes: list[str] = field(default_factory=list)  # sources tried before this one, and why they failed

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": int(len(self.x_train)), "test": int(len(self.x_test))}


def prepare_images(x: np.ndarray) -> np.ndarray:
    """Images as the model takes them: float32, shape (N, 28, 28, 1), pixels scaled to [0, 1].

    Accepts one image (28×28) or a batch, with or without the channel axis; integer pixels are
    divided by 255, float pixels above 1 are taken as 0..255 and divided too.
    """
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[1:] != (28, 28):
        raise DataError(
            f"images must have shape (N, 28, 28) or (N, 28, 28, 1), got {tuple(np.shape(x))}",
            hint="give 28×28 grayscale digits",
        )
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        out = arr.astype(np.float32) / 255.0
    else:
        out = arr.astype(np.float32)
        if out.size and float(np.nanmax(out)) > 1.0:
            out = out / 255.0
    return out[..., None]


def keras_cache_path() -> Path:
    """Where `keras.datasets.mnist.load_data()` keeps its download (honours KERAS_HOME)."""
    root = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(root).expanduser() / "datasets" / "mnist.npz"


def load_mnist(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> MnistData:
    """Load MNIST from the first source that has it.

    1. `path` (else the `data` setting, MLSERVE_DATA): an `mnist.npz` as Keras writes it, or a folder
       of the four IDX files (gzipped or not); the word `sample` selects the shipped sample.
    2. the Keras cache (`~/.keras/datasets/mnist.npz`);
    3. a download through `keras.datasets.mnist.load_data()` (skipped when `allow_download` is false);
    4. the offline sample at `mlserve/model/sample/mnist_sample.npz`, with a `warning`.

    A user path that does not exist raises NotFoundError; unreadable or wrong-shaped data DataError.
    """
    given = settings.get("data", None if path is None else str(path))
    if given:
        if str(given).strip().lower() == SAMPLE_KEYWORD:
            data = load_sample()
            data.warning = None  # asked for by name: no need to warn
            return data
        return load_user_data(given)

    notes: list[str] = []
    cache = keras_cache_path()
    if cache.is_file():
        x_train, y_train, x_test, y_test = _read_keras_npz(
            cache, hint=f"delete the damaged cache file {cache} and run again")
        return MnistData(x_train, y_train, x_test, y_test, source="keras-cache",
                         description=_describe("Keras cache", cache, x_train, x_test), path=str(cache))
    notes.append(f"no Keras cache at {cache}")

    if allow_download:
        offline = network_problem(DOWNLOAD_HOST, 443)
        if offline:
            notes.append(f"download skipped: {offline}")
            data = load_sample()
            data.notes = notes
            return data
        try:
            x_train, y_train, x_test, y_test = _download()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - no network, a proxy, a half-written file: fall back to the sample
            notes.append(f"download failed: {_one_line(e)}")
        else:
            return MnistData(x_train, y_train, x_test, y_test, source="download",
                             description=_describe("downloaded by Keras", cache, x_train, x_test),
                             path=str(cache), notes=notes)
    else:
        notes.append("download disabled")

    data = load_sample()
    data.notes = notes
    return data


def load_sample() -> MnistData:
    """The shipped 5,000-digit sample, shuffled with a fixed seed and split 4,000 / 1,000."""
    try:
        with np.load(SAMPLE_PATH, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
    except Exception as e:
        raise DataError(f"the offline sample {SAMPLE_PATH} cannot be read: {_one_line(e)}",
                        hint="reinstall mlserve, or give MNIST with --data / MLSERVE_DATA") from e
    x, y = _check_pair(x, y, "x", "y", SAMPLE_PATH, hint="reinstall mlserve")
    order = np.random.default_rng(SAMPLE_SEED).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train = x[:SAMPLE_TRAIN], y[:SAMPLE_TRAIN]
    x_test, y_test = x[SAMPLE_TRAIN:], y[SAMPLE_TRAIN:]
    return MnistData(x_train, y_train, x_test, y_test, source="sample",
                     description=_describe("offline sample (5,000 real MNIST digits)", SAMPLE_PATH,
                                           x_train, x_test),
                     path=str(SAMPLE_PATH), warning=SAMPLE_WARNING)


def load_user_data(path: str | os.PathLike) -> MnistData:
    """MNIST from a path the user gave: an `mnist.npz` file or a folder of IDX files."""
    p = Path(path).expanduser()
    if not p.exists():
        raise NotFoundError(
            f"MNIST data not found at {p}",
            hint="give an mnist.npz (x_train, y_train, x_test, y_test) or a folder of the four IDX "
                 "files with --data / MLSERVE_DATA, or leave it empty to use the Keras cache or the "
                 "offline sample",
        )
    if p.is_dir():
        x_train, y_train, x_test, y_test = _read_idx_folder(p)
        kind = "IDX files"
    else:
        x_train, y_train, x_test, y_test = _read_keras_npz(
            p, hint="give an mnist.npz as keras.datasets.mnist writes it (x_train, y_train, "
                    "x_test, y_test) or a folder of the four IDX files")
        kind = "npz file"
    return MnistData(x_train, y_train, x_test, y_test, source="user",
                     description=_describe(f"user data ({kind})", p, x_train, x_test), path=str(p))


# --- readers ---------------------------------------------------------------------------------------

def _read_keras_npz(path: Path, *, hint: str) -> tuple[np.ndarray, ...]:
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)} (it has: {', '.join(f.files) or 'nothing'})",
                                hint=hint)
            arrays = {k: f[k] for k in keys}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise DataError(f"{path} is not a readable .npz file: {_one_line(e)}", hint=hint) from e
    x_train, y_train = _check_pair(arrays["x_train"], arrays["y_train"], "x_train", "y_train", path, hint)
    x_test, y_test = _check_pair(arrays["x_test"], arrays["y_test"], "x_test", "y_test", path, hint)
    return x_train, y_train, x_test, y_test


def _find_idx(folder: Path, stem: str) -> Path:
    # Both spellings exist in the wild: train-images-idx3-ubyte and train-images.idx3-ubyte.
    matches = sorted(p for p in folder.iterdir()
                     if p.is_file() and p.name.startswith(stem) and "idx" in p.name)
    if not matches:
        raise DataError(
            f"{folder} has no {stem}-idx*-ubyte[.gz] file",
            hint="the folder needs train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                 "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (gzipped or not)",
        )
    plain = [p for p in matches if not p.name.endswith(".gz")]
    return plain[0] if plain else matches[0]


def _read_idx_folder(folder: Path) -> tuple[np.ndarray, ...]:
    arrays = {key: read_idx(_find_idx(folder, stem)) for key, stem in IDX_FILES.items()}
    hint = "the IDX files must be MNIST's: 28×28 unsigned-byte images and one label per image"
    x_train, y_train = _check_pair(arrays["x_train"], arrays["y_train"], "train images", "train labels",
                                   folder, hint)
    x_test, y_test = _check_pair(arrays["x_test"], arrays["y_test"], "test images", "test labels",
                                 folder, hint)
    return x_train, y_train, x_test, y_test


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (the format MNIST is published in), gzipped or not, as a uint8 array."""
    hint = f"re-download {path.name}, or give an mnist.npz instead"
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path} cannot be read: {_one_line(e)}", hint=hint) from e
    if len(raw) < 4:
        raise DataError(f"{path} is not an IDX file (too short)", hint=hint)
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})", hint=hint)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header)", hint=hint)
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path} holds {len(raw) - header} bytes of data, its header says {expected}",
                        hint=hint)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _check_pair(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str, where: Path,
                hint: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels (N,) in 0..9, as uint8; anything else is a DataError."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{x_name} in {where} has shape {x.shape}, expected (N, 28, 28)", hint=hint)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{y_name} in {where} has shape {y.shape}, expected ({len(x)},)", hint=hint)
    if len(x) == 0:
        raise DataError(f"{x_name} in {where} is empty", hint=hint)
    if not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)):
        raise DataError(f"{x_name}/{y_name} in {where} are {x.dtype}/{y.dtype}, expected integers "
                        "(pixels 0..255, labels 0..9)", hint=hint)
    if x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 9:
        raise DataError(f"{x_name}/{y_name} in {where} are out of range (pixels 0..255, labels 0..9)",
                        hint=hint)
    return x.astype(np.uint8, copy=False), y.astype(np.uint8, copy=False)


def network_problem(host: str, port: int, timeout: float = NETWORK_CHECK_S) -> str | None:
    """None when a TCP connection to host:port opens within `timeout` seconds, else why not (one line).

    Name resolution runs in a daemon thread so that a resolver which never answers costs
    `timeout`, not the system's own (often 20-40 s) wait.
    """
    import socket
    import threading

    found: list = []

    def resolve() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as e:
            found.append(e)

    worker = threading.Thread(target=resolve, daemon=True, name="mlserve-dns")
    worker.start()
    worker.join(timeout)
    if not found:
        return f"no DNS answer for {host} within {timeout:g} s"
    if isinstance(found[0], OSError):
        return f"{host} does not resolve ({_one_line(found[0])})"
    family, kind, proto, _name, address = found[0][0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
    except OSError as e:
        return f"{host}:{port} does not accept a connection ({_one_line(e) or 'timed out'})"
    return None


def _download() -> tuple[np.ndarray, ...]:
    from mlserve.tfquiet import quiet_tensorflow

    quiet_tensorflow()
    import keras  # the only TensorFlow-side import of this module

    # Keras announces the download on stdout; stdout is for results (`mlserve train --json`).
    with contextlib.redirect_stdout(sys.stderr):
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    hint = "delete the Keras cache file and run again"
    x_train, y_train = _check_pair(x_train, y_train, "x_train", "y_train", keras_cache_path(), hint)
    x_test, y_test = _check_pair(x_test, y_test, "x_test", "y_test", keras_cache_path(), hint)
    return x_train, y_train, x_test, y_test


def _describe(kind: str, path: Path, x_train: np.ndarray, x_test: np.ndarray) -> str:
    return f"{kind} at {path}: {len(x_train):,} train / {len(x_test):,} test digits"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
