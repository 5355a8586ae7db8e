# The serving fixtures (a tiny exported model and a local server on a free port).
from tests.serving.conftest import exported, exported_template, server, shared_server, shared_stubs, stubs, tiny_model  # noqa: F401
