"""REST codecs in TF Serving's words (util/json_tensor.cc), in process: no server needed."""
from __future__ import annotations

import pytest

from mlserve.server.codecs.jsondoc import decode_b64
from mlserve.server.errors import ServingError


@pytest.mark.parametrize("text,expected", [("aGVsbG8=", b"hello"), ("aGVsbG8", b"hello"), ("aGVs\nbG8=", b"hello")])
def test_base64_as_absl_reads_it(text: str, expected: bytes) -> None:
    assert decode_b64({"b64": text}) == expected


@pytest.mark.parametrize("text", ["!!!!", "aGVsbG8*", "a", "aGVs_bG8"])
def test_invalid_base64_is_refused_not_dropped(text: str) -> None:
    with pytest.raises(ServingError) as err:
        decode_b64({"b64": text})
    assert (err.value.code, err.value.message) == ("INVALID_ARGUMENT", "Unable to base64 decode")
