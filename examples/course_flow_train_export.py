"""The course's train -> export flow through mlserve's library API, then a check of the export.

    MLSERVE_HOME=/tmp/demo python examples/course_flow_train_export.py --epochs 5

Trains the course CNN (data: --data / MLSERVE_DATA, else the Keras cache, a download, or the shipped
sample), exports it as the next SavedModel version, lists the versions, and checks that the exported
serving_default signature predicts what the Keras model predicts.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from mlserve import settings  # noqa: E402
from mlserve.model.data import load_mnist, prepare_images  # noqa: E402
from mlserve.model.export import export_model, list_versions  # noqa: E402
from mlserve.model.cnn import train  # noqa: E402
from mlserve.workspace import Workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data", default=None, help="mnist.npz, IDX folder or 'sample'")
    args = parser.parse_args()

    mnist = load_mnist(args.data)
    print(f"data: {mnist.description}")
    if mnist.warning:
        print(f"note: {mnist.warning}")

    result = train(epochs=args.epochs, seed=42, mnist=mnist)
    print(f"trained: test accuracy {result.test_accuracy:.4f}, loss {result.test_loss:.4f} "
          f"in {result.duration_s:.1f} s -> {result.model_path}")

    name = settings.get("model_name")
    base = Workspace.current().model_base_path(name)
    exported = export_model(result.model_path, base, model_name=name)
    print(f"exported version {exported.version} to {exported.path}")
    for key, tensor in {**exported.signature["inputs"], **exported.signature["outputs"]}.items():
        print(f"  {key}: {tensor['dtype']} {tensor['shape']}")

    for v in list_versions(base):
        print(f"version {v.version}: {v.size_bytes / 1024:.0f} KiB, test accuracy {v.test_accuracy:.4f}")

    # What TF Serving will run: the signature, called on the first test digits.
    import tensorflow as tf

    images = prepare_images(mnist.x_test[:8])
    serve = tf.saved_model.load(str(exported.path)).signatures["serving_default"]
    served = serve(Conv1_input=tf.constant(images))["softmax"].numpy()
    keras_probs = result.model.predict(images, verbose=0)
    assert np.allclose(served, keras_probs, atol=1e-6), "SavedModel and Keras model disagree"
    print(f"labels    {mnist.y_test[:8].tolist()}")
    print(f"predicted {served.argmax(axis=1).tolist()}  (SavedModel == Keras model)")


if __name__ == "__main__":
    main()
