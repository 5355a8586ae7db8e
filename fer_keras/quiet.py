"""Keeping TensorFlow's native start-up lines off a command's terminal.

TensorFlow and its libraries write lines such as ``I0000 ... oneDNN custom
operations are on`` and, on a machine without a GPU, ``E0000 ... failed call
to cuInit`` straight to file descriptor 2 from C++, before Python's logging
or ``TF_CPP_MIN_LOG_LEVEL`` can filter them. :func:`native_stderr_to` points
descriptor 2 at a file while TensorFlow loads and finds its devices; the
lines are replayed when that step fails, so nothing needed to diagnose a
failure is lost.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def native_stderr_to_file(enabled: bool = True, expected: tuple[type[BaseException], ...] = ()):
    """Sends everything written to descriptor 2 (C++ included) to a temporary file for the block.

    On an exception, other than the ``expected`` kinds a command reports in one line of its own,
    the captured text is written back to stderr before the exception propagates.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException as err:
            sys.stderr.flush()
            os.dup2(saved, 2)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            if text and not isinstance(err, expected):
                sys.stderr.write(text)
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def load_tensorflow_quietly(enabled: bool = True) -> None:
    """Imports TensorFlow and lets it look for devices with its native log lines hidden (see module)."""
    with native_stderr_to_file(enabled):
        import tensorflow as tf

        tf.config.list_physical_devices()
