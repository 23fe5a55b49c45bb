"""Everything the tests share that is not a fixture (fixtures live in the conftest.py files and
import what they need from here). Tests import `from support.X import ...`: tests/ is on
sys.path (it has no __init__.py), for the tests in sub-packages too.

- paths:        the repository's folders (ROOT, TESTS, STANDINS)
- ports:        a free port, whether a port is free again, whether a process is gone
- servers:      a real `python -m mlserve.server` on free ports (ServerProcess, launch_server)
- models:       MODEL_NAME, and the one tiny trained model (train_tiny_model, export_tiny_model)
- tinymodels:   untrained SavedModels with the course's signature, tf.Example models, digits_batch
- half_plus_two: TF Serving's testdata model, rebuilt as its generator builds it
- cli:          `mlserve` in a fresh interpreter (run_cli, parse_json_stdout, heavy_imports)
- tflite:       exports with a TFLite file, a server on them
- h2client:     a raw HTTP/2 client for what grpcio will not send
- deploy:       the manifests' validators and the kubectl stand-in's log
- rollout:      the `labelled` model whose answer names its version, a server on a config file
- runtimes:     the environment of `mlserve` subprocesses run against stand-ins
"""
