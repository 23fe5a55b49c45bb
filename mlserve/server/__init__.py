"""mlserve's embedded model server: TensorFlow Serving's gRPC and REST APIs in Python.

Run it as `python -m mlserve.server --model_name=NAME --model_base_path=PATH --rest_api_port=8501`
(TF Serving's own flags). Parts: `flags` (command line), `config` (ModelServerConfig), `servable`
(one loaded version), `manager` (versions over time), `grpc_service`, `http` (REST), `main`.
Nothing here imports TensorFlow at package import time.
"""
