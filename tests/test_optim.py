import dataclasses

import keras
import numpy as np
import pytest

from fer_keras.config import TrainConfig
from fer_keras.optim import CoupledAdam, CoupledSGD, learning_rate, make_optimizer


def test_coupled_sgd_adds_l2_to_the_gradient_before_momentum():
    v = keras.Variable(np.array([1.0, -2.0], np.float32))
    opt = CoupledSGD(l2=0.1, learning_rate=0.5, momentum=0.9)
    g = np.array([0.2, 0.4], np.float32)
    opt.apply([g], [v])
    first = np.array([1.0, -2.0]) - 0.5 * (g + 0.1 * np.array([1.0, -2.0]))
    np.testing.assert_allclose(v.numpy(), first, rtol=1e-6)
    opt.apply([g], [v])
    # PyTorch: buf = 0.9 * buf + (g + wd * p); p -= lr * buf
    buf = 0.9 * (g + 0.1 * np.array([1.0, -2.0])) + (g + 0.1 * first)
    np.testing.assert_allclose(v.numpy(), first - 0.5 * buf, rtol=1e-6)


def test_coupled_optimizers_serialise():
    for cls in (CoupledSGD, CoupledAdam):
        opt = cls(l2=1e-4, learning_rate=1e-3)
        again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
        assert type(again) is cls and again.l2 == pytest.approx(1e-4)


def test_paper_recipe_is_the_default():
    opt = make_optimizer(TrainConfig(), steps_per_epoch=10)
    assert isinstance(opt, CoupledSGD) and opt.l2 == pytest.approx(1e-4)
    assert float(opt.learning_rate) == pytest.approx(1e-3) and opt.momentum == pytest.approx(0.9)
    assert isinstance(make_optimizer(dataclasses.replace(TrainConfig(), optimizer="adamw"), 10), keras.optimizers.AdamW)


def test_cosine_schedule_with_warmup():
    config = dataclasses.replace(TrainConfig(), schedule="cosine", warmup_epochs=1, epochs=3, learning_rate=0.1)
    schedule = learning_rate(config, steps_per_epoch=10)
    assert float(schedule(0)) == pytest.approx(0.0)
    assert float(schedule(10)) == pytest.approx(0.1, rel=1e-3)
    assert float(schedule(30)) == pytest.approx(0.0, abs=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        TrainConfig(epochs=0)


def test_nesterov_flag_reaches_the_optimizer_and_changes_its_steps():
    from fer_keras.train import build_parser, config_from_args

    args = build_parser().parse_args(["--optimizer", "sgd", "--nesterov", "--lr", "0.1"])
    config = config_from_args(args)
    assert config.nesterov and make_optimizer(config, 10).nesterov
    assert not config_from_args(build_parser().parse_args([])).nesterov
    # A run recorded before the field existed resumes with plain momentum.
    old = config.to_dict()
    del old["nesterov"]
    assert TrainConfig.from_dict(old).nesterov is False

    def two_steps(nesterov: bool) -> float:
        w = keras.Variable(1.0)
        opt = CoupledSGD(learning_rate=0.1, momentum=0.9, nesterov=nesterov)
        for _ in range(2):
            opt.apply([keras.ops.convert_to_tensor(2.0 * float(w.numpy()))], [w])  # gradient of w**2
        return float(w.numpy())

    # Plain momentum: 1 -> 0.8 -> 0.46; Nesterov (w += 0.9 m - lr g after m = 0.9 m - lr g): 1 -> 0.62 -> 0.2224.
    assert two_steps(False) == pytest.approx(0.46)
    assert two_steps(True) == pytest.approx(0.2224, abs=1e-5)
