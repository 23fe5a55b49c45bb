"""TF Serving's gRPC API on the HTTP/2 transport (default) or grpcio (fallback)."""
