"""Server-side batching with TF Serving's `--batching_parameters_file` semantics.

Concurrent requests for the same servable, signature and input shapes (all but dim 0) wait in one
queue; a batch thread concatenates them along dim 0, pads up to the next `allowed_batch_sizes`
entry by repeating the first row of the last request (as TF Serving's batching session does),
calls the model once and hands each caller its own rows back. A batch runs when it is full
(`max_batch_size` rows), when `batch_timeout_micros` passed since its first request, or, with the
default timeout of 0, as soon as a batch thread is free: under load the requests that arrive while
the threads are busy form the next batch. At most `max_enqueued_batches` batches wait per queue;
past that a request fails at once with UNAVAILABLE "The batch scheduling queue to which this task
was submitted is full" (HTTP 503), the status TF Serving's shared batch scheduler returns.

Defaults when only `--enable_batching` is given are TF Serving's: max_batch_size 1000,
batch_timeout_micros 0, max_enqueued_batches 10, num_batch_threads = number of CPUs
(`batchingparams.py` parses and checks them).

Both APIs use one `Batcher`:

    batcher = Batcher(BatchingOptions.from_file(path))
    batcher.submit_callback(servable, signature_name, inputs, done)  # done(outputs, error) (REST)
    outputs = batcher.run(servable, signature_name, inputs)                 # blocking (gRPC)
    future = batcher.submit_future(servable, signature_name, inputs)
    batcher.close()

`--batching_policy adaptive --latency_objective_ms N` (mlserve extension) replaces the fixed
`max_batch_size` / `batch_timeout_micros` by a controller per loaded version and signature
(`adaptive.py`) that tunes both online; `max_batch_size` stays the ceiling.

Differences from TF Serving: requests whose inputs differ in shape beyond dim 0 go to separate
queues (TF Serving fails the whole mixed batch with FAILED_PRECONDITION unless
`pad_variable_length_inputs`), and each request is validated against the signature before it joins
a batch, so one bad request never fails the others.
"""
from __future__ import annotations

import bisect
import concurrent.futures
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Mapping, Optional

import numpy as np

from mlserve.server.observability import metrics
from mlserve.server.errors import ServingError
from mlserve.server.servables.adaptive import AdaptiveControl
from mlserve.server.servables.batchingparams import BatchingOptions

log = logging.getLogger("mlserve.server.batching")

Done = Callable[[Optional[dict], Optional[BaseException]], None]


# completes requests' inputs once per batch: (servable, signature, [inputs], timeout, [notes]) ->
# [inputs | error] (the feature lookup's `complete_many`: one store read for a batch)
Prepare = Callable[[Any, str, list, Optional[float], list], list]


class _Task:
    __slots__ = ("inputs", "rows", "done", "enqueued", "notes", "prepare")

    def __init__(self, inputs: dict[str, np.ndarray], rows: int, done: Done, notes: dict | None,
                 prepare: Prepare | None = None) -> None:
        self.inputs, self.rows, self.done, self.notes, self.prepare = inputs, rows, done, notes, prepare
        self.enqueued = time.perf_counter()

    def finish(self, outputs: dict | None, error: BaseException | None) -> None:
        try:
            self.done(outputs, error)
        except Exception:  # noqa: BLE001 - a caller's bug must not end the batch thread
            log.exception("batch completion callback failed")


class _Queue:
    __slots__ = ("servable", "signature", "batches", "opened", "control", "rows")

    def __init__(self, servable: Any, signature: str, control: AdaptiveControl | None) -> None:
        self.servable, self.signature, self.control = servable, signature, control
        self.batches: deque[list] = deque()  # each: [rows, [tasks]]
        self.rows = 0  # in all its batches
        self.opened = 0.0  # perf_counter of the open (last) batch's first task


class Batcher:
    """Batches concurrent requests per (servable, signature, input shapes); thread-safe."""

    def __init__(self, options: BatchingOptions | None = None) -> None:
        self.options = options or BatchingOptions()
        self._cond = threading.Condition()
        self._queues: dict[tuple, _Queue] = {}
        self._ready: deque[tuple] = deque()  # queue keys in arrival order of their first batch
        self._closed = False
        # --batching_policy adaptive: a controller per (loaded version, signature)
        self.adaptive = self.options.policy == "adaptive"
        self._controls: dict[tuple, tuple[Any, AdaptiveControl]] = {}
        self._bypassing = 0  # requests running on their caller's thread (adaptive, low load)
        self._running = 0  # batches on batch threads now
        self._threads = [
            threading.Thread(target=self._work, name=f"{self.options.thread_pool_name}-{i}", daemon=True)
            for i in range(self.options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # ---------------------------------------------------------------------------- submit

    def submit_future(self, servable: Any, signature_name: str, inputs: Mapping[str, np.ndarray],
                      notes: dict | None = None, prepare: Prepare | None = None) -> concurrent.futures.Future:
        """Queue one request; the future holds its outputs or a ServingError. Raises at once
        INVALID_ARGUMENT for a bad request and UNAVAILABLE when the queue is full."""
        future: concurrent.futures.Future = concurrent.futures.Future()

        def done(outputs: dict | None, error: BaseException | None) -> None:
            if error is None:
                future.set_result(outputs)
            else:
                future.set_exception(error)

        self.submit_callback(servable, signature_name, inputs, done, notes, prepare)
        return future

    def submit_callback(self, servable: Any, signature_name: str, inputs: Mapping[str, np.ndarray],
                        done: Done, notes: dict | None = None, prepare: Prepare | None = None) -> None:
        """Queue one request; `done(outputs, None)` or `done(None, error)` is called once, on a
        batch thread (or here, for an empty batch, or a request the adaptive policy lets bypass
        the batch threads). Raises like `submit_future`. `notes` gets the batch the request ran
        in (batch, batch_limit, queue_ms) for the request log. With `prepare`, the inputs are
        incomplete (a feature lookup's key): `prepare` completes every such request of a batch in
        one call on the batch thread, then each is checked against the signature.

        The cheap form for callers that hand the answer on anyway (the REST server): no Future,
        so no lock and condition variable per request."""
        sig = servable.signature(signature_name)
        inputs = servable.validate(sig, dict(inputs)) if prepare is None else dict(inputs)
        arrays = {k: np.asarray(v) for k, v in inputs.items()}
        rows = -1
        for arr in arrays.values():
            size = arr.shape[0] if arr.ndim else -2
            if rows == -1:
                rows = size
            elif size != rows:
                rows = -2
        if rows < 1:
            if rows == -2 or not arrays:
                raise ServingError("INVALID_ARGUMENT",
                                   "Batching Run() input tensors must have equal 0th-dimension size")
            # an empty batch: nothing to merge, run directly
        opts = self.options
        if rows > opts.max_batch_size:
            raise ServingError("INVALID_ARGUMENT",
                               f"Task size {rows} is larger than maximum input batch size {opts.max_batch_size}")
        if rows < 1:
            try:
                if prepare is not None:
                    result = prepare(servable, signature_name, [arrays], None, [notes])[0]
                    if isinstance(result, BaseException):
                        raise result
                    arrays = servable.validate(sig, result)
                outputs = servable.run(signature_name, arrays)
            except Exception as e:  # noqa: BLE001 - handed to the caller
                done(None, e)
            else:
                done(outputs, None)
            return
        if opts.pad_variable_length_inputs:
            shapes = tuple(sorted((k, a.dtype.str, a.ndim) for k, a in arrays.items()))
        else:
            shapes = tuple(sorted((k, a.dtype.str, a.shape[1:]) for k, a in arrays.items()))
        key = (id(servable), signature_name, shapes)
        task = _Task(arrays, rows, done, notes, prepare)
        control = None
        with self._cond:
            if self._closed:
                raise ServingError("UNAVAILABLE", "Server is shutting down")
            queue = self._queues.get(key)
            if self.adaptive:
                control = self._control(servable, signature_name)
                control.arrived()
                bypass = control.quiet and not self._queues and not self._running and not self._bypassing
                if bypass:  # low load and nothing waiting: the unbatched path, on this thread
                    self._bypassing += 1
            if control is None or not bypass:
                if queue is None:
                    queue = self._queues[key] = _Queue(servable, signature_name, control)
                self._enqueue(key, queue, task)
                return
        self._run_alone(servable, signature_name, task, control)

    def _enqueue(self, key: tuple, queue: _Queue, task: _Task) -> None:
        """Under the lock: add `task` to its queue's open batch, or open one. With the adaptive
        policy a batch holds up to the controller's limit, and the queue's bound is counted in
        rows (max_enqueued_batches x max_batch_size), so a small limit does not shrink it."""
        opts = self.options
        rows = task.rows
        limit = queue.control.limit if queue.control is not None else opts.max_batch_size
        batches = queue.batches
        opened = not batches or batches[-1][0] + rows > limit
        if opened:
            if queue.control is None:
                full = len(batches) >= opts.max_enqueued_batches
            else:
                full = queue.rows + rows > opts.max_enqueued_batches * opts.max_batch_size
            if full:
                raise ServingError("UNAVAILABLE",
                                   "The batch scheduling queue to which this task was submitted is full")
            if not batches:  # a queue sits in _ready once, while it has batches
                self._ready.append(key)
            batches.append([0, []])
            queue.opened = task.enqueued
        batch = batches[-1]
        batch[0] += rows
        batch[1].append(task)
        queue.rows += rows
        # A batch thread must look again only when a batch opens (a new deadline, or the one
        # before is now closed) or fills; a task joining an open batch changes neither, and
        # waking a thread per request costs a context switch and a GIL hand-off each.
        if opened or batch[0] >= limit:
            self._cond.notify()

    def controls(self) -> list[tuple[Any, str, AdaptiveControl]]:
        """(servable, signature, controller) of each queue family the adaptive policy tunes."""
        with self._cond:
            return [(servable, key[1], control) for key, (servable, control) in self._controls.items()]

    def _control(self, servable: Any, signature_name: str) -> AdaptiveControl:
        """Under the lock: the controller of (servable, signature), made on first use."""
        ckey = (id(servable), signature_name)
        entry = self._controls.get(ckey)
        if entry is None or entry[0] is not servable:
            if len(self._controls) > 64:
                self._controls.clear()
            control = AdaptiveControl(self.options.latency_objective_ms / 1000, self.options.max_batch_size,
                                      getattr(servable, "name", ""), signature_name)
            entry = self._controls[ckey] = (servable, control)
        return entry[1]

    def _run_alone(self, servable: Any, signature_name: str, task: _Task, control: AdaptiveControl) -> None:
        """A bypassing request: run now on this thread, count it like a batch of one."""
        try:
            if task.prepare is not None and not _prepared(servable, signature_name, [task]):
                return
            t0 = time.perf_counter()
            try:
                outputs = servable.run(signature_name, task.inputs)
            except Exception as e:  # noqa: BLE001 - handed to the caller
                task.finish(None, e)
                return
            elapsed = time.perf_counter() - t0
            metrics.observe_runtime(getattr(servable, "name", ""), "Predict", elapsed)
            control.observe(task.rows, elapsed, [time.perf_counter() - task.enqueued], False)
            if task.notes is not None:
                task.notes.update(batch=task.rows, batch_limit=control.limit, queue_ms=0.0)
            task.finish(outputs, None)
        finally:
            with self._cond:
                self._bypassing -= 1

    def run(self, servable: Any, signature_name: str, inputs: Mapping[str, np.ndarray],
            timeout: float | None = None) -> dict[str, np.ndarray]:
        """Blocking `submit_future(...).result()` for thread callers (the gRPC handlers)."""
        return self.submit_future(servable, signature_name, inputs).result(timeout)

    def close(self) -> None:
        """Stop the batch threads after the queued batches ran."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    # ---------------------------------------------------------------------------- batch threads

    def _take(self) -> tuple[_Queue, list, bool] | None:
        """Under the lock: wait for a batch that may run (full, closed, or timed out) and pop it."""
        timeout_s = self.options.batch_timeout_micros / 1e6
        max_rows = self.options.max_batch_size
        while True:
            wait: float | None = None
            now = time.perf_counter()
            for _ in range(len(self._ready)):
                key = self._ready[0]
                queue = self._queues[key]
                batch = queue.batches[0]
                closed = len(queue.batches) > 1
                control = queue.control
                if control is None:
                    due = queue.opened + timeout_s - now
                    rows_full = batch[0] >= max_rows
                else:
                    due = queue.opened + control.wait - now
                    rows_full = batch[0] >= control.limit
                if closed or rows_full or due <= 0 or self._closed:
                    self._ready.popleft()
                    queue.batches.popleft()
                    queue.rows -= batch[0]
                    if queue.batches:  # the next batch of this queue waits its turn
                        self._ready.append(key)
                    else:
                        del self._queues[key]
                    return queue, batch[1], closed or rows_full
                wait = due if wait is None else min(wait, due)
                self._ready.rotate(-1)
            if self._closed and not self._ready:
                return None
            self._cond.wait(wait)

    def _work(self) -> None:
        while True:
            with self._cond:
                item = self._take()
                if item is None:
                    return
                if self.adaptive:  # its low-load bypass asks whether a batch is running
                    self._running += 1
            try:
                self._run_batch(*item)
            finally:
                if self.adaptive:
                    with self._cond:
                        self._running -= 1

    def _run_batch(self, queue: _Queue, tasks: list[_Task], pressed: bool = False) -> None:
        """Run one batch; `pressed`: it ran because it was full or another waited behind it."""
        started = time.perf_counter()
        if any(t.prepare is not None for t in tasks):
            tasks = _prepared(queue.servable, queue.signature, tasks)
            if not tasks:
                return
        try:
            merged, sizes, padding = self._merge(tasks)
            t0 = time.perf_counter()
            outputs = queue.servable.run(queue.signature, merged)
            elapsed = time.perf_counter() - t0
            total = sum(sizes) + padding
            parts: list[dict[str, np.ndarray]] = [{} for _ in tasks]
            for name, value in outputs.items():
                arr = np.asarray(value)
                if arr.ndim == 0 or arr.shape[0] != total:
                    raise ServingError(
                        "FAILED_PRECONDITION",
                        f"Batched output tensor {name} has 0th dimension "
                        f"{arr.shape[0] if arr.ndim else 'none'}, expected {total}: "
                        "this signature cannot be batched")
                start = 0
                for part, size in zip(parts, sizes):
                    part[name] = arr[start:start + size]
                    start += size
        except BaseException as e:  # noqa: BLE001 - every caller gets the error
            for task in tasks:
                task.finish(None, e)
            return
        metrics.observe_batch(input_sizes=sizes, processed=total, padding=padding,
                              queuing_seconds=[started - t.enqueued for t in tasks],
                              thread_pool_name=self.options.thread_pool_name)
        model = getattr(queue.servable, "name", "")
        metrics.observe_runtime(model, "Predict", elapsed)
        control = queue.control
        rows = sum(sizes)
        if control is not None:
            now = time.perf_counter()
            limit = control.limit
            control.observe(rows, elapsed, [now - t.enqueued for t in tasks], pressed)
        else:
            limit = self.options.max_batch_size
        for task, part in zip(tasks, parts):
            if task.notes is not None:
                task.notes.update(batch=rows, batch_limit=limit, queue_ms=round((started - task.enqueued) * 1000, 3))
            task.finish(part, None)

    def _merge(self, tasks: list[_Task]) -> tuple[dict[str, np.ndarray], list[int], int]:
        sizes = [t.rows for t in tasks]
        rows = sum(sizes)
        allowed = self.options.allowed_batch_sizes
        target = rows
        if allowed:
            i = bisect.bisect_left(allowed, rows)
            target = allowed[i] if i < len(allowed) else rows
        padding = target - rows
        merged: dict[str, np.ndarray] = {}
        for name in tasks[0].inputs:
            parts = [t.inputs[name] for t in tasks]
            if self.options.pad_variable_length_inputs:
                parts = _pad_to_common_shape(parts)
            if padding:
                parts.append(np.repeat(parts[-1][:1], padding, axis=0))
            merged[name] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return merged, sizes, padding


def _prepared(servable: Any, signature_name: str, tasks: list[_Task]) -> list[_Task]:
    """`tasks` with the incomplete ones completed by ONE `prepare` call and checked against the
    signature; a task that failed either way is finished with its error and left out."""
    keyed = [t for t in tasks if t.prepare is not None]
    try:
        results = keyed[0].prepare(servable, signature_name, [t.inputs for t in keyed], None,
                                   [t.notes for t in keyed])
    except Exception as e:  # noqa: BLE001 - every keyed caller gets the error
        results = [e] * len(keyed)
    sig = servable.signature(signature_name)
    failed = set()
    for task, result in zip(keyed, results):
        task.prepare = None
        try:
            if isinstance(result, BaseException):
                raise result
            task.inputs = {k: np.asarray(v) for k, v in servable.validate(sig, result).items()}
        except Exception as e:  # noqa: BLE001 - this caller's own failure
            failed.add(id(task))
            task.finish(None, e)
    return [t for t in tasks if id(t) not in failed]


def _pad_to_common_shape(parts: list[np.ndarray]) -> list[np.ndarray]:
    """Pad dims 1.. of each tensor to the largest in the batch with the tensor's first value
    (TF Serving's pad_variable_length_inputs)."""
    ndim = parts[0].ndim
    if any(p.ndim != ndim for p in parts):
        raise ServingError("FAILED_PRECONDITION", "Tensors in one batch have different ranks")
    biggest = tuple(max(p.shape[d] for p in parts) for d in range(1, ndim))
    out = []
    for p in parts:
        if p.shape[1:] == biggest:
            out.append(p)
            continue
        widths = [(0, 0)] + [(0, b - s) for b, s in zip(biggest, p.shape[1:])]
        fill = p.flat[0] if p.size else 0
        out.append(np.pad(p, widths, mode="constant", constant_values=fill))
    return out
