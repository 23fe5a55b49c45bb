"""TF Serving's testdata model `half_plus_two`, rebuilt as its generator builds it.

Follows tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py (the TF1
graph path, use_main_op=False): variables a=0.5, b=2, c=3 (and a2, c2), a `tf_example` string
placeholder parsed into features x and x2, y = a*x + b, y2 = a*x + c, y3 = a2*x2 + c2, the asset
foo.txt assigned to `filename_tensor` by the main op, and the five signatures serving_default,
regress_x_to_y, regress_x_to_y2, regress_x2_to_y3 and classify_x_to_y with the same tensor names.
"""
from __future__ import annotations

from pathlib import Path

ASSET_CONTENTS = "asset-file-contents"


def build_half_plus_two(export_dir: Path, assets_dir: Path) -> None:
    """Write the SavedModel to `export_dir` (which must not exist); the asset is written first
    under `assets_dir` and copied into the model, as the generator does."""
    import tensorflow as tf

    v1 = tf.compat.v1
    assets_dir.mkdir(parents=True, exist_ok=True)
    asset_path = assets_dir / "foo.txt"
    asset_path.write_text(ASSET_CONTENTS)
    feature_spec = {
        "x": v1.FixedLenFeature([1], dtype=tf.float32),
        "x2": v1.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0]),
    }

    def info(t):  # noqa: ANN001, ANN202
        return v1.saved_model.utils.build_tensor_info(t)

    def signature(inputs, outputs, method):  # noqa: ANN001, ANN202
        return v1.saved_model.signature_def_utils.build_signature_def(
            {k: info(t) for k, t in inputs.items()}, {k: info(t) for k, t in outputs.items()}, method)

    builder = v1.saved_model.builder.SavedModelBuilder(str(export_dir))
    with tf.Graph().as_default(), v1.Session() as sess:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        c = v1.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example", shape=[None])
        example = v1.parse_example(serialized, feature_spec)
        x = tf.identity(example["x"], name="x")
        y = tf.identity(tf.add(tf.multiply(a, x), b), name="y")
        y2 = tf.identity(tf.add(tf.multiply(a, x), c), name="y2")
        x2 = tf.identity(example["x2"], name="x2")
        a2 = v1.Variable(0.5, name="a2")
        c2 = v1.Variable(3.0, name="c2")
        y3 = tf.identity(tf.add(tf.multiply(a2, x2), c2), name="y3")

        asset_tensor = tf.constant(str(asset_path))
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset_tensor)
        filename = v1.Variable("foo.txt", name="filename_tensor", trainable=False, collections=[])
        assign_filename = filename.assign("foo.txt")

        regress, classify = "tensorflow/serving/regress", "tensorflow/serving/classify"
        signatures = {
            "regress_x_to_y": signature({"inputs": serialized}, {"outputs": y}, regress),
            "regress_x_to_y2": signature({"inputs": serialized}, {"outputs": y2}, regress),
            "regress_x2_to_y3": signature({"inputs": x2}, {"outputs": y3}, regress),
            "classify_x_to_y": signature({"inputs": serialized}, {"scores": y}, classify),
            "serving_default": signature({"x": x}, {"y": y}, "tensorflow/serving/predict"),
        }
        sess.run(v1.global_variables_initializer())
        builder.add_meta_graph_and_variables(
            sess, ["serve"], signature_def_map=signatures,
            assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
            main_op=tf.group(assign_filename))
    builder.save()
