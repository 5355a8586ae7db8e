import keras
import numpy as np
import pytest

from fer_keras.models import (
    MODELS,
    FacePreprocessing,
    build_model,
    non_trainable_parameters,
    trainable_parameters,
)
from fer_keras.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD

# (model, trainable, non-trainable) at width 1, 6 classes, 64x64: the paper's figures.
PUBLISHED = [
    ("gimefive", 10_478_086, 3_968),
    ("baseline", 2_606_086, 1_920),
    ("gimefive6", 41_950_726, 8_064),
    ("vgg", 72_460_742, 896),
    ("resnet18", 11_179_590, 9_600),
    ("resnet34", 21_287_750, 17_024),
]


@pytest.mark.parametrize("name,trainable,non_trainable", PUBLISHED)
def test_parameter_counts_match_the_paper(name, trainable, non_trainable):
    model = build_model(name)
    assert trainable_parameters(model) == trainable
    assert non_trainable_parameters(model) == non_trainable


def test_vgg_with_one_batchnorm_per_conv_has_896_more_parameters():
    assert trainable_parameters(build_model("vgg", shared_bn=False)) == 72_460_742 + 896


@pytest.mark.parametrize("name", sorted(MODELS))
def test_named_layers_and_outputs(name):
    model = build_model(name, width=1 / 16, num_classes=7, input_size=64)
    assert model.input.name == "face" or model.layers[0].name == "face"
    for layer in ("preprocess", "last_conv", "logits", "probabilities"):
        model.get_layer(layer)
    assert len(model.get_layer("last_conv").output.shape) == 4
    out = model(np.zeros((2, 64, 64, 1), np.float32))
    assert out["logits"].shape == (2, 7)
    np.testing.assert_allclose(np.asarray(out["probabilities"]).sum(1), 1.0, rtol=1e-5)


def test_gimefive_last_conv_is_the_fifth_convolution_before_bn():
    model = build_model("gimefive")
    last = model.get_layer("last_conv")
    assert isinstance(last, keras.layers.Conv2D)
    assert tuple(last.output.shape[1:]) == (4, 4, 1024)
    assert model.get_layer("block5_bn").input.shape == last.output.shape


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'gimefiv'.*gimefive"):
        build_model("gimefiv")


def test_input_size_and_class_count_are_parameters():
    model = build_model("gimefive", width=1 / 16, input_size=48, num_classes=7)
    assert model.input_shape[1:3] == (48, 48)
    assert model.get_layer("logits").output.shape[-1] == 7


def test_too_small_input_is_rejected():
    with pytest.raises(ValueError, match="too small"):
        build_model("gimefive", input_size=16)


def test_preprocessing_matches_the_paper_for_gray_and_rgb():
    layer = FacePreprocessing()
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (3, 8, 8, 1)).astype(np.uint8)
    expected = (np.repeat(gray / 255.0, 3, axis=-1) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(np.asarray(layer(gray)), expected, atol=1e-5)
    # A gray face stored as RGB gives the same tensor; uint8 and float inputs agree.
    rgb = np.repeat(gray, 3, axis=-1)
    np.testing.assert_allclose(np.asarray(layer(rgb)), expected, atol=1e-4)
    np.testing.assert_allclose(np.asarray(layer(rgb.astype(np.float32))), expected, atol=1e-4)


def test_rgb_is_converted_with_luma_weights_not_channel_order_blind():
    layer = FacePreprocessing()
    red = np.zeros((1, 2, 2, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((1, 2, 2, 3), np.uint8)
    blue[..., 2] = 255
    # Red is brighter than blue in luma: BGR fed as RGB would swap these.
    assert float(np.asarray(layer(red))[0, 0, 0, 0]) > float(np.asarray(layer(blue))[0, 0, 0, 0])


def test_one_model_accepts_one_or_three_channels():
    model = build_model("gimefive", width=1 / 16)
    gray = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 1)).astype(np.float32)
    a = np.asarray(model(gray)["logits"])
    b = np.asarray(model(np.repeat(gray, 3, axis=-1))["logits"])
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_keras_save_load_round_trip(tmp_path):
    model = build_model("resnet18", width=1 / 16)
    x = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3)).astype(np.float32)
    before = np.asarray(model(x)["probabilities"])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(x)["probabilities"]), before, atol=1e-6)
