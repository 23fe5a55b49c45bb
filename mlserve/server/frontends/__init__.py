"""Protocol front-ends: decode a request, call the data plane, encode the answer."""
