"""Wire definitions shared by the server and the clients (the Open Inference Protocol's gRPC messages)."""
