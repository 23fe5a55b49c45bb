"""Transports: HTTP/1.1 and HTTP/2 on asyncio, and the resources they share. They know no TF Serving."""
