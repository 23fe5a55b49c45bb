"""A model version served from its `model.tflite` through LiteRT (TF Serving's `--prefer_tflite_model`).

TF Serving, with `--prefer_tflite_model`, loads `<base>/<version>/model.tflite` instead of the
SavedModel where that file exists, and the SavedModel otherwise. Here the answers stay the same as
the SavedModel's: the metadata (signature defs) comes from `saved_model.pb` beside the file, the
inputs are checked against those signatures the same way, and REST, gRPC, batching, warm-up and
the version policy go through the `Servable` interface unchanged; only `run` differs. A `.tflite`
whose signature does not match the SavedModel's (keys, dtypes, shapes), or that LiteRT cannot
load, fails that version's load, and the manager keeps serving the versions it had.

Concurrency: `num_tflite_pools` × `num_tflite_interpreters_per_pool` interpreters of the model,
each single-threaded; a call borrows a free one and gives it back (an interpreter is not
thread-safe), so at most that many calls run at once and the rest wait their turn.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlserve.server.errors import ServingError
from mlserve.server.servables.savedmodel import Servable
from mlserve.server.servables.signature import DEFAULT_SIGNATURE, SignatureInfo, read_meta_graph, tensor_spec

TFLITE_FILE = "model.tflite"


@dataclass(frozen=True)
class TFLiteOptions:
    """TF Serving's three TFLite flags. pools=0 means TF Serving's default: one per CPU."""

    prefer_tflite_model: bool = False
    num_tflite_pools: int = 0
    num_tflite_interpreters_per_pool: int = 1

    def interpreters(self) -> int:
        pools = self.num_tflite_pools if self.num_tflite_pools > 0 else (os.cpu_count() or 1)
        return max(1, pools) * max(1, self.num_tflite_interpreters_per_pool)


def tflite_path(version_dir: str | Path) -> Path | None:
    path = Path(version_dir) / TFLITE_FILE
    return path if path.is_file() else None


def load_servable(name: str, version: int, path: str | Path, *, tags: Sequence[str] = ("serve",),
                  tflite: TFLiteOptions | None = None) -> Servable:
    """The servable for one version folder: from model.tflite when preferred and present, else
    the SavedModel (TF Serving falls back the same way)."""
    if tflite is not None and tflite.prefer_tflite_model and tflite_path(path) is not None:
        return TFLiteServable.load(name, version, path, tags=tags, options=tflite)
    return Servable.load(name, version, path, tags=tags)


def fingerprint(path: Path) -> tuple:
    """What a version folder's reload depends on: saved_model.pb and model.tflite (size, mtime)."""
    out: list[int] = []
    for name in ("saved_model.pb", TFLITE_FILE):
        try:
            st = (path / name).stat()
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [0, 0]
    return tuple(out)


class TFLiteServable(Servable):
    """A version whose signatures run in LiteRT interpreters; everything else is `Servable`'s."""

    runtime = "tflite"

    def __init__(self, name: str, version: int, path: Path, meta_graph: Any, pool: Any) -> None:
        # Servable.__init__ would need a loaded SavedModel; this sets the same attributes from
        # the MetaGraphDef and the interpreter pool instead.
        self.name = name
        self.version = version
        self.path = path
        self._meta_graph = meta_graph
        self._loaded = None
        self._functions = {}
        self._flat = {}
        self._pool = pool
        self.signatures: dict[str, SignatureInfo] = {}
        for key, sd in meta_graph.signature_def.items():
            if key == pool.signature:
                self.signatures[key] = SignatureInfo(
                    name=key, method_name=sd.method_name,
                    inputs={k: tensor_spec(k, v) for k, v in sd.inputs.items()},
                    outputs={k: tensor_spec(k, v) for k, v in sd.outputs.items()})

    @classmethod
    def load(cls, name: str, version: int, path: str | Path, *, tags: Sequence[str] = ("serve",),
             options: TFLiteOptions | None = None) -> "TFLiteServable":
        """Load `path/model.tflite` with its SavedModel's signatures; ValueError on a mismatch."""
        from mlserve.errors import MlserveError
        from mlserve.edge.litert import InterpreterPool

        p = Path(path)
        options = options or TFLiteOptions(prefer_tflite_model=True)
        meta_graph = read_meta_graph(p, tags)
        content = (p / TFLITE_FILE).read_bytes()
        signature = DEFAULT_SIGNATURE
        try:
            pool = InterpreterPool(content, options.interpreters(), signature=signature)
        except MlserveError as e:
            raise ValueError(f"{p / TFLITE_FILE}: {e.message}") from e
        if signature not in meta_graph.signature_def:
            raise ValueError(f"{p / TFLITE_FILE} serves signature {signature!r}, which the SavedModel "
                             f"in {p} does not have")
        check_signature(p / TFLITE_FILE, meta_graph.signature_def[signature], pool)
        return cls(name, version, p, meta_graph, pool)

    def __repr__(self) -> str:
        return f"<TFLiteServable {self.name} version {self.version} at {self.path}>"

    def signature_def_map(self) -> Any:
        """The SavedModel's signature defs that the .tflite file serves."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        out = get_model_metadata_pb2.SignatureDefMap()
        for key in self.signatures:
            out.signature_def[key].CopyFrom(self._meta_graph.signature_def[key])
        return out

    def run(self, signature_name: str | None, inputs: dict[str, Any],
            output_filter: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        sig = self.signature(signature_name)
        self.check_output_filter(sig, output_filter)
        checked = self.validate(sig, inputs)
        # Servable.validate leaves shapes to the TF graph; an interpreter takes only the shapes
        # its signature declares.
        for key in sorted(sig.inputs):
            want, got = sig.inputs[key].shape, checked[key].shape
            if want is not None and (len(got) != len(want) or any(
                    w is not None and w != g for w, g in zip(want, got))):
                raise ServingError("INVALID_ARGUMENT", f'Input "{key}" has shape [{",".join(map(str, got))}] '
                                   f'but signature "{sig.name}" expects '
                                   f'[{",".join("-1" if d is None else str(d) for d in want)}]')
        try:
            outputs = self._pool.predict(checked)
        except Exception as e:  # LiteRT raises ValueError/RuntimeError; mlserve.edge.litert DataError
            raise ServingError("INTERNAL", f"TFLite inference failed: {getattr(e, 'message', e)}") from e
        keys = output_filter or list(sig.outputs)
        return {k: outputs[k] for k in keys}


def check_signature(where: Path, signature_def: Any, pool: Any) -> None:
    """The .tflite signature must take and give what the SavedModel's does; ValueError if not."""
    problems = []
    for kind, saved, lite in (("input", signature_def.inputs, pool.inputs),
                              ("output", signature_def.outputs, pool.outputs)):
        if sorted(saved) != sorted(lite):
            problems.append(f"{kind}s {sorted(lite)} instead of {sorted(saved)}")
            continue
        for key in saved:
            spec, info = tensor_spec(key, saved[key]), lite[key]
            if np.dtype(info.dtype) != spec.dtype:
                problems.append(f"{kind} {key} is {np.dtype(info.dtype).name}, not {spec.dtype.name}")
            elif spec.shape is not None:
                want = [-1 if d is None else d for d in spec.shape]
                got = list(info.shape)
                # LiteRT reports batch-1 shapes when the file has no shape signature; only the
                # batch dimension may differ then
                if len(got) != len(want) or any(w != g for w, g in zip(want[1:], got[1:])):
                    problems.append(f"{kind} {key} has shape {got}, not {want}")
    if problems:
        raise ValueError(f"{where} does not match the SavedModel's signature "
                         "serving_default: " + "; ".join(problems))
