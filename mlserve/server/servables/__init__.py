"""One loaded version: signatures, the call into TensorFlow or LiteRT, batching."""
