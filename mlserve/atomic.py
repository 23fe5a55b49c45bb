"""Put a finished folder in place of another in one step, never leaving neither."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path


def replace_folder(new: Path, target: Path) -> None:
    """Rename `new` to `target`, which exists: the old folder is moved aside first, put back if
    the rename fails, and removed once the new one is in place."""
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)  # put the old folder back rather than leave none
        raise
    shutil.rmtree(old, ignore_errors=True)
