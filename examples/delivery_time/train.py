"""Train and export the delivery-time model (a small Keras regression) as a versioned SavedModel.

    python examples/delivery_time/train.py --out /tmp/delivery_time     # writes /tmp/delivery_time/1/

The data is generated, so the example needs no download. Each example is one order:
    distance_km            uniform 0.5..8        (request time: the client knows it)
    orders_last_hour       Poisson(rate), rate uniform 5..40    (the online store holds it)
    outstanding_per_minute uniform 0..20                       (the online store holds it)
(the ranges of examples/delivery_time/features.py's generated restaurants)
    minutes = 10 + 3.0 * distance_km + 0.25 * orders_last_hour + 2.0 * outstanding_per_minute
              + Normal(0, 1.5) noise
The SavedModel's serving_default signature takes the three as float32 [batch, 1] inputs with
those names and returns `minutes` [batch, 1]. The entity key (restaurant_id) is not a model
input: the server reads the two store features by it (docs/feature-lookup.md).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FEATURES = ("distance_km", "orders_last_hour", "outstanding_per_minute")
WEIGHTS = (3.0, 0.25, 2.0)
BIAS = 10.0


def generate(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """`n` orders as the module docstring describes: (inputs by name, minutes)."""
    rng = np.random.default_rng(seed)
    x = {
        "distance_km": rng.uniform(0.5, 8.0, n),
        "orders_last_hour": rng.poisson(rng.uniform(5, 40, n)).astype(np.float64),
        "outstanding_per_minute": rng.uniform(0.0, 20.0, n),
    }
    minutes = BIAS + sum(w * x[f] for f, w in zip(FEATURES, WEIGHTS)) + rng.normal(0, 1.5, n)
    return {k: v.astype(np.float32).reshape(-1, 1) for k, v in x.items()}, minutes.astype(np.float32).reshape(-1, 1)


def build_model():  # -> tf.keras.Model
    import tensorflow as tf

    inputs = {f: tf.keras.Input(shape=(1,), name=f, dtype=tf.float32) for f in FEATURES}
    joined = tf.keras.layers.Concatenate()([inputs[f] for f in FEATURES])
    scaled = tf.keras.layers.Rescaling([1 / 8.0, 1 / 40.0, 1 / 20.0])(joined)
    hidden = tf.keras.layers.Dense(16, activation="relu")(scaled)
    minutes = tf.keras.layers.Dense(1, name="minutes")(hidden)
    model = tf.keras.Model(inputs, minutes)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.02), loss="mse")
    return model


def train_and_export(out: Path, version: int = 1, examples: int = 4000, epochs: int = 30,
                     seed: int = 0) -> Path:
    """Fit on generated orders and save `out/<version>/`; returns that folder."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    x, y = generate(examples, seed)
    model = build_model()
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    spec = {f: tf.TensorSpec([None, 1], tf.float32, name=f) for f in FEATURES}

    @tf.function(input_signature=[spec])
    def serve(features):
        return {"minutes": model(features, training=False)}

    target = Path(out) / str(version)
    tf.saved_model.save(model, str(target), signatures={"serving_default": serve})
    tx, ty = generate(500, seed + 1)
    mae = float(np.mean(np.abs(model.predict(tx, verbose=0) - ty)))
    print(f"saved {target} (mean absolute error on fresh orders: {mae:.2f} minutes)")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/delivery_time"),
                        help="model base path (the version folder goes under it)")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    train_and_export(args.out, args.version, epochs=args.epochs)


if __name__ == "__main__":
    main()
