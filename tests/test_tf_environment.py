"""The package's environment defaults for TensorFlow, set before TensorFlow loads."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import {module}, tensorflow; from tensorflow.python.util import _pywrap_util_port as p; "
         "print('onednn', p.IsMklEnabled())")


@pytest.mark.parametrize("module", ["fer_keras.train", "clients.video"])
def test_onednn_kernels_are_on_unless_the_environment_says_otherwise(module):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    for setting, expected in ((None, "onednn True"), ("0", "onednn False")):
        if setting is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = setting
        said = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert said.returncode == 0, said.stderr[-2000:]
        assert expected in said.stdout, (module, setting, said.stdout)
