"""serving/README.md's rollout against the local server: a label in use moves only to an AVAILABLE version."""

import time

import pytest
from tensorflow_serving.apis import model_pb2

from fer_keras.data.taxonomy import SIX
from fer_keras.exporting import export_saved_model
from serving.config import single_model_config
from serving.local.registry import State
from serving.local.server import LocalServer


def config_with(base, versions, labels):
    config = single_model_config("gimefive", str(base))
    model = config.model_config_list.config[0]
    model.model_version_policy.specific.versions.extend(versions)
    for label, version in labels.items():
        model.version_labels[label] = version
    return config


def served(registry, label):
    return registry.resolve(model_pb2.ModelSpec(name="gimefive", version_label=label)).version


def wait_available(registry, version, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dict((v, s) for v, s, _ in registry.version_states("gimefive")).get(version) == State.AVAILABLE:
            return True
        time.sleep(0.1)
    return False


def test_two_step_label_move(exported, tiny_model):
    base = exported / "gimefive"
    first = config_with(base, [1], {"stable": 1, "canary": 1})
    with LocalServer(first, port=0, poll_seconds=0.1) as srv:
        registry = srv.registry
        assert wait_available(registry, 1)
        export_saved_model(tiny_model, exported, "gimefive", SIX.classes, version=2)
        # One step (add 2 and point canary at it in the same edit) is refused, as TF Serving refuses it.
        with pytest.raises(ValueError, match="not available yet"):
            registry.set_config(config_with(base, [1, 2], {"stable": 1, "canary": 2}))
        assert served(registry, "canary") == 1
        # Step 1: add version 2 only; wait until it is AVAILABLE.
        registry.set_config(config_with(base, [1, 2], {"stable": 1, "canary": 1}))
        assert wait_available(registry, 2)
        # Step 2: move the canary; stable traffic is untouched.
        registry.set_config(config_with(base, [1, 2], {"stable": 1, "canary": 2}))
        assert (served(registry, "stable"), served(registry, "canary")) == (1, 2)
        # Step 3: promote, then drop version 1.
        registry.set_config(config_with(base, [1, 2], {"stable": 2, "canary": 2}))
        registry.set_config(config_with(base, [2], {"stable": 2, "canary": 2}))
        assert served(registry, "stable") == 2


def test_a_new_label_for_an_unavailable_version_needs_the_flag(exported):
    base = exported / "gimefive"
    with LocalServer(config_with(base, [1], {"stable": 1}), port=0, poll_seconds=0.1) as srv:
        assert wait_available(srv.registry, 1)
        with pytest.raises(ValueError, match="allow_version_labels_for_unavailable_models"):
            srv.registry.set_config(config_with(base, [1, 3], {"stable": 1, "next": 3}))
    with LocalServer(config_with(base, [1], {"stable": 1}), port=0, poll_seconds=0.1,
                     allow_labels_for_unavailable=True) as srv:
        assert wait_available(srv.registry, 1)
        srv.registry.set_config(config_with(base, [1, 3], {"stable": 1, "next": 3}))
        with pytest.raises(ValueError, match="in use"):
            srv.registry.set_config(config_with(base, [1, 3], {"stable": 3, "next": 3}))
