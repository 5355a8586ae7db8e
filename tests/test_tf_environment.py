"""The package's environment defaults for TensorFlow, set before TensorFlow loads."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, **env_changes) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"} | env_changes
    said = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert said.returncode == 0, said.stderr[-2000:]
    return said.stdout.strip()


@pytest.mark.parametrize("package", ["fer_keras", "clients", "tuning", "benchmarks"])
def test_each_entry_package_sets_the_default_before_tensorflow_loads(package):
    """``python -m PACKAGE.command`` imports the package first: its defaults must be in place by then."""
    code = f"import os, sys, {package}; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), 'tensorflow' in sys.modules)"
    assert _python(code) == "1 False"
    assert _python(code, TF_ENABLE_ONEDNN_OPTS="0") == "0 False"  # the environment's own setting stays


def test_tensorflow_runs_its_onednn_kernels_unless_the_environment_says_otherwise():
    code = ("import fer_keras.train, tensorflow; from tensorflow.python.util import _pywrap_util_port as p; "
            "print(p.IsMklEnabled())")
    assert _python(code) == "True"
    assert _python(code, TF_ENABLE_ONEDNN_OPTS="0") == "False"
