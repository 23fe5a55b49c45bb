"""The bodies the open loop sends (`bench --rate --repeat F`): a base body and distinct variants.

A prediction cache keyed by the input bytes answers a repeated input without the model, so a load
that sends one body over and over measures the cache, not the server. Here a fraction F of the
requests repeat an input already sent and the rest carry a fresh one, never sent before in the run.

A fresh input is the base images with the first pixel of the first image set to a value of its own
(the i-th of 0.10000000, 0.10000001, ... in JSON; the i-th float32 above 0.1 in binary tensors): all
distinct as float32, all inside the pixel range. The body is encoded once with a sentinel in that
pixel; its bytes are split around the sentinel's, so each variant is `pre + token + post` with
tokens of one fixed width (one Content-Length). Which input each request carries, and every token,
is settled before the level starts; sending one joins three prebuilt parts (a memory copy, not an
encode), so a fresh input costs the generator no more than a repeated one.

    template = BodyTemplate.build(lambda im: predict_body(im, "serving_default"), images, text=True)
    plan = plan_inputs(count=1000, repeat=0.5, seed=0, first_fresh=0)
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any, Callable

from mlserve.errors import UsageError

MAX_DISTINCT_INPUTS = 1_000_000  # fresh inputs in one run (every level together)
_NUMBER_BYTES = frozenset(b"0123456789.-+eE")
_SENTINELS = (0.1, 0.7)  # float32 bytes CD CC CC 3D and 33 33 33 3F: all four bytes differ
_FLOAT32_0_1 = struct.unpack("<I", struct.pack("<f", 0.1))[0]


def parse_repeat(value: float) -> float:
    """`--repeat F`: the fraction of requests that repeat an input already sent, 0 to 1."""
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise UsageError(f"--repeat must be a fraction from 0 to 1, got {value:g}",
                         hint="e.g. --repeat 0.5 (half the requests repeat an input already sent); "
                              "--repeat 0 sends every input once")
    return value


@dataclass(frozen=True)
class BodyTemplate:
    """A request body with one swappable pixel: the base body, and `pre + token(i) + post`."""

    base: bytes
    pre: bytes
    post: bytes
    text: bool  # JSON digits; else float32 little-endian bytes

    @classmethod
    def build(cls, encode: Callable[[Any], bytes], images: Any, *, text: bool) -> BodyTemplate:
        """Encode `images` (the base) and twice more with sentinels in their first pixel, to find
        where that pixel's value lies in the encoded bytes."""
        import numpy as np

        base_images = np.ascontiguousarray(images, dtype=np.float32)
        bodies = []
        for sentinel in _SENTINELS:
            marked = base_images.copy()
            marked.reshape(-1)[0] = sentinel
            bodies.append(encode(marked))
        a, b = bodies
        start = 0
        while start < min(len(a), len(b)) and a[start] == b[start]:
            start += 1
        end_a, end_b = len(a), len(b)
        while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
            end_a, end_b = end_a - 1, end_b - 1
        if text:  # the whole number, not only the digits that differ
            while start > 0 and a[start - 1] in _NUMBER_BYTES:
                start -= 1
            while end_a < len(a) and a[end_a] in _NUMBER_BYTES:
                end_a += 1
            if abs(float(a[start:end_a]) - _SENTINELS[0]) > 1e-6:
                raise ValueError(f"the first pixel is not one JSON number in the body: {a[start:end_a]!r}")
        elif a[start:end_a] != struct.pack("<f", _SENTINELS[0]):
            raise ValueError("the first pixel is not one float32 in the binary body")
        return cls(encode(base_images), a[:start], a[end_a:], text)

    @property
    def token_width(self) -> int:
        return 10 if self.text else 4

    def token(self, i: int) -> bytes:
        """The first pixel's bytes in the i-th fresh input (0 <= i < MAX_DISTINCT_INPUTS)."""
        if not 0 <= i < MAX_DISTINCT_INPUTS:
            raise ValueError(f"fresh input {i} is outside 0..{MAX_DISTINCT_INPUTS - 1}")
        if self.text:  # 1e-8 apart, above float32's spacing (7.5e-9) in [0.0625, 0.125): distinct
            return f"{0.1 + i * 1e-8:.8f}".encode()
        return struct.pack("<I", _FLOAT32_0_1 + i)

    def body(self, i: int | None) -> bytes:
        """The base body (None) or the i-th fresh one, joined (for tests and checks)."""
        return self.base if i is None else self.pre + self.token(i) + self.post


@dataclass
class InputPlan:
    """Which input each scheduled request of one level carries: -1 the base, i >= 0 fresh input i."""

    inputs: list[int]
    repeats: list[bool]  # True where the request repeats an input already sent
    next_fresh: int  # the first fresh input a later level may use


def plan_inputs(count: int, repeat: float, seed: int, first_fresh: int) -> InputPlan:
    """`count` requests of which round(count × repeat) repeat an input already sent, spread evenly;
    a repeat picks uniformly among the inputs sent before it in the level (the base counts as sent,
    so --repeat 1 sends the base body every time, as before). Fresh inputs are numbered from
    `first_fresh` on, so no level reuses another's."""
    draw = random.Random(seed)
    inputs: list[int] = []
    repeats: list[bool] = []
    seen = [-1]
    fresh = first_fresh
    for k in range(count):
        again = int((k + 1) * repeat + 1e-9) > int(k * repeat + 1e-9)
        if again:
            inputs.append(seen[draw.randrange(len(seen))])
        else:
            inputs.append(fresh)
            seen.append(fresh)
            fresh += 1
        repeats.append(again)
    return InputPlan(inputs, repeats, fresh)


def fresh_needed(counts: list[int], repeat: float) -> int:
    """How many fresh inputs levels of `counts` scheduled requests use at `repeat`."""
    return sum(count - int(count * repeat + 1e-9) for count in counts)


def check_pool(counts: list[int], repeat: float) -> int:
    """The fresh inputs a run needs, refused before any request when above MAX_DISTINCT_INPUTS."""
    needed = fresh_needed(counts, repeat)
    if needed > MAX_DISTINCT_INPUTS:
        raise UsageError(f"--repeat {repeat:g} over {sum(counts):,} scheduled requests needs {needed:,} "
                         f"distinct inputs; at most {MAX_DISTINCT_INPUTS:,} per run",
                         hint="lower --rate or --duration, or raise --repeat")
    return needed
