"""mlserve's embedded model server: TensorFlow Serving's gRPC and REST APIs in Python.

Run it as `python -m mlserve.server --model_name=NAME --model_base_path=PATH --rest_api_port=8501`
(TF Serving's own flags). Protocol front-ends (`rest`; `grpc_frontend` on `h2`, or `grpc_servicers` on grpcio, both over `grpc_methods`) over one data plane
(`dataplane`); see docs/architecture.md for the module map and the request path.
Nothing here imports TensorFlow at package import time.
"""
