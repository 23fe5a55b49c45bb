"""MNIST loading: user npz, IDX folders (plain and gzipped), the Keras cache, the offline sample."""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlserve.model import data
from mlserve.model.data import load_mnist, prepare_images
from mlserve.errors import DataError, NotFoundError


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME (so no Keras cache), no KERAS_HOME, no MLSERVE_DATA."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MLSERVE_HOME", str(tmp_path / "mlserve"))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv("MLSERVE_DATA", raising=False)
    return home


def _digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def _write_npz(path: Path) -> dict[str, np.ndarray]:
    (x_train, y_train), (x_test, y_test) = _digits(30, 1), _digits(10, 2)
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    np.savez_compressed(path, **arrays)
    return arrays


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    magic = 0x0803 if array.ndim == 3 else 0x0801
    payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _write_idx_folder(folder: Path, arrays: dict[str, np.ndarray], gz: bool) -> None:
    folder.mkdir()
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    for key, name in names.items():
        _write_idx(folder / name, arrays[key], gz)


def _assert_same(loaded: data.MnistData, arrays: dict[str, np.ndarray]) -> None:
    for key, expected in arrays.items():
        got = getattr(loaded, key)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected)


def test_user_npz_file(tmp_path: Path) -> None:
    arrays = _write_npz(tmp_path / "mnist.npz")
    loaded = load_mnist(tmp_path / "mnist.npz", allow_download=False)
    assert loaded.source == "user"
    assert str(tmp_path / "mnist.npz") in loaded.description and "30 train / 10 test" in loaded.description
    assert loaded.warning is None
    _assert_same(loaded, arrays)


def test_user_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _write_npz(tmp_path / "mnist.npz")
    monkeypatch.setenv("MLSERVE_DATA", str(tmp_path / "mnist.npz"))
    _assert_same(load_mnist(allow_download=False), arrays)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzipped"])
def test_user_idx_folder(tmp_path: Path, gz: bool) -> None:
    arrays = _write_npz(tmp_path / "mnist.npz")
    _write_idx_folder(tmp_path / "idx", arrays, gz)
    loaded = load_mnist(str(tmp_path / "idx"))
    assert loaded.source == "user" and "IDX" in loaded.description
    _assert_same(loaded, arrays)


def test_missing_user_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as e:
        load_mnist(tmp_path / "nope.npz")
    assert e.value.hint and "--data" in e.value.hint


@pytest.mark.parametrize("content", [b"", b"this is not a zip file" * 10, b"PK\x03\x04broken"])
def test_corrupt_npz_is_data_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mnist.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_mnist(path)
    assert e.value.hint


def test_wrong_shape_and_missing_keys_are_data_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "flat.npz", x_train=np.zeros((5, 784), np.uint8), y_train=np.zeros(5, np.uint8),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.uint8))
    with pytest.raises(DataError, match=r"\(5, 784\)"):
        load_mnist(tmp_path / "flat.npz")
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(DataError, match="lacks"):
        load_mnist(tmp_path / "partial.npz")
    np.savez(tmp_path / "labels.npz", x_train=np.zeros((5, 28, 28), np.uint8), y_train=np.full(5, 12),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="out of range"):
        load_mnist(tmp_path / "labels.npz")


def test_truncated_idx_is_data_error(tmp_path: Path) -> None:
    arrays = _write_npz(tmp_path / "mnist.npz")
    _write_idx_folder(tmp_path / "idx", arrays, gz=False)
    images = tmp_path / "idx" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match="header says"):
        load_mnist(tmp_path / "idx")
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte").unlink()
    images.write_bytes(b"\x00\x00\x08\x03")
    with pytest.raises(DataError):
        load_mnist(tmp_path / "idx")


def test_keras_cache_is_used(isolated: Path) -> None:
    cache = isolated / ".keras" / "datasets" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    arrays = _write_npz(cache)
    loaded = load_mnist(allow_download=False)
    assert loaded.source == "keras-cache" and loaded.path == str(cache)
    _assert_same(loaded, arrays)


def test_sample_fallback_without_cache_or_download() -> None:
    loaded = load_mnist(allow_download=False)
    assert loaded.source == "sample"
    assert loaded.sizes == {"train": 4000, "test": 1000}
    assert loaded.x_test.shape == (1000, 28, 28) and loaded.x_test.dtype == np.uint8
    assert "5,000" in loaded.warning and "CC BY-SA 3.0" in loaded.warning and "LeCun" in loaded.warning
    assert any("download disabled" in n for n in loaded.notes)
    # Shuffled, not sorted by label as stored: every digit appears in the first hundred test images.
    assert set(loaded.y_test[:100].tolist()) == set(range(10))


def test_sample_keyword_selects_the_sample_without_warning() -> None:
    loaded = load_mnist("sample")
    assert loaded.source == "sample" and loaded.warning is None


def test_sample_split_is_identical_in_another_process() -> None:
    # `mlserve predict --index 0` runs in another process: it must see the same test digits.
    here = load_mnist(allow_download=False)
    code = ("import hashlib; from mlserve.model.data import load_sample; d = load_sample(); "
            "print(hashlib.sha256(d.x_test.tobytes() + d.y_test.tobytes()).hexdigest())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           check=True, env=os.environ.copy()).stdout.strip()
    assert other == hashlib.sha256(here.x_test.tobytes() + here.y_test.tobytes()).hexdigest()


def test_prepare_images() -> None:
    x = np.full((3, 28, 28), 255, np.uint8)
    prepared = prepare_images(x)
    assert prepared.shape == (3, 28, 28, 1) and prepared.dtype == np.float32
    assert float(prepared.max()) == 1.0
    assert prepare_images(x[0]).shape == (1, 28, 28, 1)
    assert prepare_images(prepared).max() == 1.0  # already scaled: unchanged
    with pytest.raises(DataError):
        prepare_images(np.zeros((2, 32, 32)))


def test_modules_import_without_tensorflow_or_matplotlib() -> None:
    code = ("import sys; import mlserve.model.data, mlserve.model.cnn, mlserve.model.export, mlserve.tools.plots, "
            "mlserve.cli.train, mlserve.cli.export; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("make,code", [(None, 4), (b"garbage", 5)], ids=["missing", "corrupt"])
def test_train_cli_reports_bad_data_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       make: bytes | None, code: int) -> None:
    from mlserve.cli.app import main

    path = tmp_path / "mnist.npz"
    if make is not None:
        path.write_bytes(make)
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(path), "--epochs", "1"])
    captured = capsys.readouterr()
    assert e.value.code == code and captured.out == ""
    assert "Error:" in captured.err and "Hint:" in captured.err and "Traceback" not in captured.err


def test_network_check_says_in_one_line_what_it_tried() -> None:
    import socket

    from mlserve.model.data import network_problem

    # .invalid never resolves (RFC 6761): the check says so instead of trying a download.
    problem = network_problem("mnist.example.invalid", 443, timeout=2.0)
    assert problem and "mnist.example.invalid does not resolve" in problem and "\n" not in problem
    with socket.socket() as listener:  # a real listening port answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert network_problem("127.0.0.1", port, timeout=2.0) is None
    closed = network_problem("127.0.0.1", port, timeout=2.0)  # the same port, now closed
    assert closed and f"127.0.0.1:{port} does not accept a connection" in closed


def test_unreachable_download_falls_back_to_the_sample_with_one_note(monkeypatch) -> None:
    import mlserve.model.data as data

    monkeypatch.setattr(data, "DOWNLOAD_HOST", "mnist.example.invalid")
    loaded = data.load_mnist(allow_download=True)
    assert loaded.source == "sample"
    skipped = [n for n in loaded.notes if n.startswith("download skipped")]
    assert len(skipped) == 1 and "mnist.example.invalid does not resolve" in skipped[0]
