"""The rules the REST codecs share, each written once: TF Serving's dtype names and the integer
range a JSON number must fit for an integer tensor (the `signature_name` check is `jsondoc.signature_name`)."""
from __future__ import annotations


import numpy as np

from mlserve.server.errors import ServingError
from mlserve.server.servables.signature import tf_type_name  # noqa: F401 - the codecs' import of it

MAX_RANK = 64  # numpy's own limit; deeper lists are rejected with 400 before any recursion

def bad(message: str) -> ServingError:
    """INVALID_ARGUMENT (HTTP 400) with `message`: what every malformed request raises."""
    return ServingError("INVALID_ARGUMENT", message)


def int_bounds(dtype: np.dtype) -> tuple[int, int]:
    """The inclusive range of JSON integers TF Serving accepts for an integer tensor of `dtype`.

    int8/16/32 and uint8/16 are read as int32 (rapidjson IsInt), uint32 as IsUint, 64-bit types
    as their own range."""
    if dtype.itemsize < 8:
        return (0, 2**32 - 1) if dtype == np.uint32 else (-(2**31), 2**31 - 1)
    return (0, 2**64 - 1) if dtype.kind == "u" else (-(2**63), 2**63 - 1)

