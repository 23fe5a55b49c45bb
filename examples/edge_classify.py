#!/usr/bin/env python3
"""Classify digits on an edge device: model.tflite and LiteRT, no TensorFlow, no mlserve.

What a phone, a Raspberry Pi or a microcontroller board with Python would run. It needs only
`pip install ai-edge-litert numpy` (and Pillow for image files):

    python examples/edge_classify.py ~/.mlserve/models/digits_model/3/model.tflite --npz mnist_sample.npz
    python examples/edge_classify.py model.tflite --image seven.png --image two.png

The model's signature (`serving_default`: float32 Conv1_input (N, 28, 28, 1) in [0, 1] -> softmax
(N, 10)) is the SavedModel's, so the same preprocessing as the server applies: an int8 model
quantises inside, floats go in and out. With --npz (arrays `x`, `y` like mlserve's offline sample,
or `x_test`, `y_test` like Keras's mnist.npz) it prints the accuracy too.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def load_model(path: Path, threads: int) -> tuple:
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    runner = interpreter.get_signature_runner("serving_default")
    (input_key,) = runner.get_input_details()
    (output_key,) = runner.get_output_details()
    return runner, input_key, output_key


def from_npz(path: Path, count: int) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(path, allow_pickle=False) as f:
        x = f["x_test"] if "x_test" in f.files else f["x"]
        y = f["y_test"] if "y_test" in f.files else (f["y"] if "y" in f.files else None)
    picks = np.linspace(0, len(x) - 1, num=min(count, len(x))).astype(int)  # spread: files may be sorted
    return x[picks], (None if y is None else y[picks])


def from_images(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    images = []
    for p in paths:
        gray = np.asarray(Image.open(p).convert("L").resize((28, 28)), dtype=np.float32)
        if np.median(np.concatenate([gray[0], gray[-1]])) > 127.5:  # black on white: invert
            gray = 255.0 - gray
        images.append(gray)
    return np.stack(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the model.tflite file")
    parser.add_argument("--npz", type=Path, help="an .npz of digits (x/y or x_test/y_test)")
    parser.add_argument("--image", type=Path, action="append", default=[], help="a PNG/JPEG digit")
    parser.add_argument("--count", type=int, default=1000, help="digits to take from --npz")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    args = parser.parse_args(argv)
    if not args.npz and not args.image:
        parser.error("give --npz or --image")

    runner, input_key, output_key = load_model(args.model, args.threads)
    if args.npz:
        pixels, labels = from_npz(args.npz, args.count)
    else:
        pixels, labels = from_images(args.image), None
    images = (pixels.astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)

    started = time.perf_counter()
    scores = np.concatenate([runner(**{input_key: images[i:i + 1]})[output_key]
                             for i in range(len(images))])  # one at a time, as a device sees them
    per_image_ms = (time.perf_counter() - started) * 1000 / len(images)
    predicted = scores.argmax(axis=1)

    summary = {"model": str(args.model), "images": int(len(images)),
               "predicted": predicted[:20].tolist(), "ms_per_image": round(per_image_ms, 4)}
    if labels is not None:
        summary["accuracy"] = round(float(np.mean(predicted == labels)), 4)
    if args.json:
        print(json.dumps(summary))
    else:
        for i, digit in enumerate(predicted[:20]):
            print(f"image {i}: {digit} ({scores[i, digit]:.3f})")
        if "accuracy" in summary:
            print(f"accuracy {summary['accuracy']:.4f} on {len(images)} digits")
        print(f"{per_image_ms:.3f} ms per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
