"""mlserve's embedded model server: TensorFlow Serving's gRPC and REST APIs in Python.

Run it as `python -m mlserve.server --model_name=NAME --model_base_path=PATH --rest_api_port=8501`
(TF Serving's own flags). Layers, one folder each: `transport/` (HTTP/1.1, HTTP/2; no TF Serving
in it), `frontends/` (REST, gRPC: decode, call the data plane, encode), `dataplane.py`, `models/`
(versions over time), `servables/` (one loaded version), `observability/`; see
docs/architecture.md for the module map and the request path.
Nothing here imports TensorFlow at package import time.
"""
