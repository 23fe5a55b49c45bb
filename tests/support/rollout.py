"""The rollout tests' model and server: tiny versioned models whose answer names their version.

Version v of `labelled` answers class CLASSES[v] for every image, so each answer says which
version produced it (the full CNN would take minutes to train per version; these load in well
under a second). Version BROKEN has a corrupt saved_model.pb: it fails to load.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.servers import ServerProcess, launch_server

MODEL = "labelled"
CLASSES = {1: 1, 2: 2, 3: 3, 4: 5}  # version -> the digit it always answers
BROKEN = 9

_SCRIPT = """
import sys
import tensorflow as tf

class Constant(tf.Module):
    def __init__(self, digit):
        self.digit = tf.constant(digit)

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="Conv1_input")])
    def serve(self, Conv1_input):
        return {"softmax": tf.one_hot(tf.fill([tf.shape(Conv1_input)[0]], self.digit), 10)}

for arg in sys.argv[2:]:
    version, digit = map(int, arg.split(":"))
    m = Constant(digit)
    tf.saved_model.save(m, f"{sys.argv[1]}/{version}", signatures={"serving_default": m.serve})
"""

CONFIG = """# Written by hand: rollout commands keep this comment and the other model.
model_config_list {{
  # the model under test
  config {{
    name: "{model}"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 }} }}
    version_labels {{ key: "stable" value: 1 }}
  }}
  config {{
    name: "other"  # a second model nobody touches
    base_path: "{base}"
    model_version_policy {{ specific {{ versions: 4 }} }}
  }}
}}
"""


def write_labelled_versions(base: Path) -> Path:
    """`base`/v for every version of CLASSES (in a subprocess: TF stays out of the test process),
    and the broken version BROKEN."""
    subprocess.run([sys.executable, "-c", _SCRIPT, str(base), *(f"{v}:{c}" for v, c in CLASSES.items())],
                   check=True, timeout=300,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    (base / str(BROKEN)).mkdir()
    (base / str(BROKEN) / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    return base


def start_server(config: Path, log: Path, *extra: str) -> ServerProcess:
    """The shared test server (support.servers) on `config`, ready when MODEL is AVAILABLE."""
    return launch_server(
        [f"--model_config_file={config}",
         # TF Serving checks labels before it loads anything: without this flag a config with
         # labels cannot start a server (TF Serving issues #1230, #1608)
         "--allow_version_labels_for_unavailable_models",
         # a version that fails to load fails at once (TF Serving's default retries 5 times,
         # a minute apart), so a failed promote is seen in seconds
         "--max_num_load_retries=0", *extra],
        log, models=[MODEL])
