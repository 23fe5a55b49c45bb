"""The prediction cache's parts on their own: keys, the in-process LRU, the Redis value codec."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mlserve.server.cache import PredictionCache, codec
from mlserve.server.cache.keys import request_key
from mlserve.server.cache.memory import ENTRY_OVERHEAD, MemoryTier
from mlserve.server.observability import metrics


def _servable(tmp_path: Path, version: int = 1, graph: bytes = b"graph-a", name: str = "m") -> SimpleNamespace:
    folder = tmp_path / f"{name}-{version}-{graph.decode()}"
    folder.mkdir(exist_ok=True)
    (folder / "saved_model.pb").write_bytes(graph)
    return SimpleNamespace(name=name, version=version, path=folder)


def test_keys_tell_apart_everything_that_decides_an_answer(tmp_path: Path) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = _servable(tmp_path)
    key = request_key(base, "serving_default", {"x": x}, None)
    assert key == request_key(_servable(tmp_path), "serving_default", {"x": x.copy()}, None)
    different = [
        request_key(_servable(tmp_path, version=2), "serving_default", {"x": x}, None),  # another version
        request_key(_servable(tmp_path, graph=b"graph-b"), "serving_default", {"x": x}, None),  # re-exported
        request_key(_servable(tmp_path, name="n"), "serving_default", {"x": x}, None),
        request_key(base, "other", {"x": x}, None),
        request_key(base, "serving_default", {"x": x}, ["y"]),
        request_key(base, "serving_default", {"x": x.astype(np.float64)}, None),
        request_key(base, "serving_default", {"x": x.reshape(3, 2)}, None),
        request_key(base, "serving_default", {"x": x + np.float32(1e-6)}, None),
        request_key(base, "serving_default", {"z": x}, None),
    ]
    assert key not in different and len(set(different)) == len(different)
    # Fortran order and C order of the same values are the same tensor
    assert request_key(base, "serving_default", {"x": np.asfortranarray(x)}, None) == key
    words = np.array([b"ab", b"c"], dtype=object)
    assert request_key(base, "s", {"w": words}, None) != request_key(
        base, "s", {"w": np.array([b"a", b"bc"], dtype=object)}, None)  # strings are length-prefixed


def test_memory_tier_is_an_lru_bounded_in_bytes() -> None:
    metrics.reset()
    one = {"y": np.zeros((1, 100), np.float32)}
    size = len(codec.encode(one)) + 1 + ENTRY_OVERHEAD  # one-byte keys
    tier = MemoryTier(max_bytes=3 * size)
    for k in (b"a", b"b", b"c"):
        tier.put(k, one)
    assert tier.get(b"a") is not None  # a is now the most recently used
    tier.put(b"d", one)  # evicts b, the least recently used
    assert tier.get(b"b") is None and tier.get(b"a") is not None and tier.get(b"d") is not None
    assert len(tier) == 3 and tier.bytes <= tier.max_bytes
    tier.put(b"huge", {"y": np.zeros((1000, 100), np.float32)})  # bigger than the bound: not kept
    assert tier.get(b"huge") is None and len(tier) == 3
    text = metrics.render().decode()
    assert ':mlserve:prediction_cache:evictions{tier="memory"} 1' in text
    assert ':mlserve:prediction_cache:entries{tier="memory"} 3' in text


def test_memory_tier_answers_cannot_be_changed_by_a_caller() -> None:
    tier = MemoryTier(1 << 20)
    answer = {"y": np.ones(3, np.float32)}
    tier.put(b"k", answer)
    answer["y"][0] = 5  # the caller's array is not the cached one
    cached = tier.get(b"k")
    assert cached["y"][0] == 1
    with pytest.raises(ValueError):
        cached["y"][0] = 7


def test_codec_round_trips_bit_for_bit() -> None:
    outputs = {
        "f": np.array([[0.1, np.nan, -0.0, np.inf]], np.float32),
        "d": np.arange(6, dtype=np.float64).reshape(2, 3) / 7,
        "i": np.array([1, -2], np.int64),
        "s": np.array([[b"neg", b"pos"], [b"\x00\xff", b""]], dtype=object),
        "empty": np.zeros((0, 4), np.float32),
    }
    back = codec.decode(codec.encode(outputs))
    assert back is not None and list(back) == list(outputs)
    for name, value in outputs.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        if value.dtype == object:
            assert back[name].tolist() == value.tolist()
        else:
            assert back[name].tobytes() == value.tobytes()


@pytest.mark.parametrize("data", [b"", b"garbage", codec.MAGIC + b"\x05\x00\x00\x00[{}]",
                                  codec.encode({"y": np.ones(4, np.float32)})[:-3]])
def test_codec_reads_foreign_or_cut_values_as_a_miss(data: bytes) -> None:
    assert codec.decode(data) is None


def test_tiers_fill_upward_on_a_lower_hit() -> None:
    upper, lower = MemoryTier(1 << 20), MemoryTier(1 << 20)
    cache = PredictionCache([upper, lower])
    lower.put(b"k", {"y": np.ones(2, np.float32)})
    assert cache.get(b"k", "m") is not None
    assert upper.get(b"k") is not None  # the second tier's hit filled the first
