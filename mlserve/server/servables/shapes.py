"""Shape checks by TensorFlow's own shape inference, for inputs whose shapes differ from the signature's.

TF Serving does not check input shapes against the signature: it feeds the tensors to the graph
and lets TensorFlow decide. Running a kernel on a shape it cannot take usually raises, but some
(oneDNN's Conv2D fed the wrong rank, TF 2.21) abort the whole process. So before a signature runs
on shapes other than its own, its graph, with every function call inlined, is imported once more
with the received shapes on its input placeholders: the importer runs every op's shape function
and raises a Python `ValueError` with TensorFlow's message where a kernel could abort. The verdict
is cached per signature and shapes (least recently used first out); inputs matching the signature's
shapes never come here.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from mlserve.server.errors import ServingError

log = logging.getLogger("mlserve.server")

MAX_CACHED_SHAPES = 256  # per signature; each entry is one shape tuple and a verdict


class ShapeChecker:
    """`check(shapes)` raises INVALID_ARGUMENT in TensorFlow's words when the graph cannot take
    `shapes` (a tuple of input shapes in `keys` order)."""

    def __init__(self, fn: Any, keys: list[str], max_cached: int = MAX_CACHED_SHAPES) -> None:
        self._fn = fn
        self._keys = keys
        self._max = max_cached
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[tuple, str | None] = OrderedDict()
        self._graph_def: Any = None
        self._placeholders: dict[str, str] | None = None  # input key -> placeholder node name

    def _prepare(self) -> None:
        from tensorflow.python.framework import convert_to_constants

        # Grappler's function inliner: nested calls become plain nodes whose shape functions run.
        self._graph_def = convert_to_constants._run_inline_graph_optimization(  # noqa: SLF001
            self._fn, lower_control_flow=False, aggressive_inlining=True)
        args, kwargs = self._fn.structured_input_signature
        flat_keys = sorted(kwargs)  # nest.flatten order of the keyword inputs
        self._placeholders = {k: t.op.name for k, t in zip(flat_keys, self._fn.inputs)}

    def _infer(self, shapes: tuple) -> str | None:
        import tensorflow as tf

        if self._graph_def is None:
            self._prepare()
        graph_def = type(self._graph_def)()
        graph_def.CopyFrom(self._graph_def)
        wanted = {self._placeholders[k]: shape for k, shape in zip(self._keys, shapes)}
        for node in graph_def.node:
            shape = wanted.get(node.name)
            if shape is not None and node.op == "Placeholder":
                proto = node.attr["shape"].shape
                proto.Clear()
                for size in shape:
                    proto.dim.add().size = size
        with tf.Graph().as_default():
            try:
                tf.graph_util.import_graph_def(graph_def, name="")
            except ValueError as e:
                return str(e)
        return None

    def check(self, shapes: tuple) -> None:
        with self._lock:
            if shapes in self._verdicts:
                self._verdicts.move_to_end(shapes)
                verdict = self._verdicts[shapes]
            else:
                try:
                    verdict = self._infer(shapes)
                except Exception as e:  # noqa: BLE001 - cannot prove it safe: refuse, never abort
                    log.warning("shape inference unavailable for %s: %s", shapes, e)
                    verdict = f"input shapes {list(map(list, shapes))} cannot be checked: {e}"
                self._verdicts[shapes] = verdict
                if len(self._verdicts) > self._max:
                    self._verdicts.popitem(last=False)
        if verdict is not None:
            raise ServingError("INVALID_ARGUMENT", verdict)
