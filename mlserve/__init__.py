"""mlserve: train, export, serve and query TensorFlow models.

Importing the package is cheap: TensorFlow and matplotlib are imported only by the functions that
need them, so `mlserve --help` and client-only commands start fast.
"""
from __future__ import annotations

__version__ = "0.1.0"
