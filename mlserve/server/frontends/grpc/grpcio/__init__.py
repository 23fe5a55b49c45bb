"""The grpcio fallback front-end (--grpc_frontend=grpcio)."""
