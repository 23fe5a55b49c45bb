"""`python -m mlserve.server <TF Serving flags>`."""
from __future__ import annotations

import sys

from mlserve.server.main import main

sys.exit(main())
