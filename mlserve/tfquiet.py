"""Keep TensorFlow's C++ start-up lines off the user's terminal unless they ask for them.

`import tensorflow` writes lines such as `WARNING: All log messages before absl::InitializeLog()`,
`cudart_stub.cc ... Could not find cuda drivers` and `cpu_feature_guard.cc ...` straight to file
descriptor 2 before absl's logging is initialised, so no environment variable silences them (tried
with TF 2.21: TF_CPP_MIN_LOG_LEVEL=3, GLOG_minloglevel and ABSL_MIN_LOG_LEVEL leave them). This
module therefore points fd 2 at a temporary file for the duration of the first import and replays
what was caught only when the import fails. Later lines (`failed call to cuInit`,
`node_def_util.cc ... use_unbounded_threadpool`) go through absl after initialisation, and
TF_CPP_MIN_LOG_LEVEL=3 (set here, inherited by child processes) silences those.

With `mlserve --verbose` or MLSERVE_DEBUG=1 nothing is hidden. Call `quiet_tensorflow()` before the
first `import tensorflow` / `import keras` of a process; it is cheap after the first call.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

# TensorFlow's C++ log threshold: 3 hides INFO, WARNING and ERROR lines (FATAL still shows).
QUIET_LEVEL = "3"


def verbose() -> bool:
    """True when the user asked to see library output (--verbose, MLSERVE_VERBOSE or MLSERVE_DEBUG)."""
    from mlserve import settings

    try:
        return bool(settings.get("verbose") or settings.get("debug"))
    except Exception:  # noqa: BLE001 - a malformed variable is reported by the command that reads it, not here
        return False


def quiet_environment() -> dict[str, str]:
    """The environment additions that keep a (child) TensorFlow process quiet; {} when verbose."""
    if verbose():
        return {}
    return {"TF_CPP_MIN_LOG_LEVEL": QUIET_LEVEL}


def quiet_tensorflow() -> Any:
    """Import TensorFlow with its start-up lines hidden (unless verbose) and return the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if verbose():
        import tensorflow

        return tensorflow
    for name, value in quiet_environment().items():
        os.environ.setdefault(name, value)
    return _import_with_fd2_caught()


def _import_with_fd2_caught() -> Any:
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a detached process): nothing to hide from
        import tensorflow

        return tensorflow
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow
        except BaseException:
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode(errors="replace"))
            sys.stderr.flush()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tensorflow
