"""TF Serving's REST API (v1) on the HTTP/1.1 transport."""
