"""The input preprocessing GiMeFive uses, as a Keras layer inside every model.

Putting it inside the model means an exported SavedModel takes raw faces
(uint8 or float pixels in [0, 255], one or three channels) and no client has
to know the normalisation.
"""

from __future__ import annotations

import keras
from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R BT.601 luma weights, the ones PIL's convert("L") and OpenCV's
# COLOR_RGB2GRAY use. Three-channel input is taken to be RGB.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@keras.saving.register_keras_serializable(package="fer_keras")
class FacePreprocessing(keras.layers.Layer):
    """Raw face pixels -> grayscale copied to 3 channels -> ImageNet-normalised.

    Accepts ``[N, H, W, 1]`` or ``[N, H, W, 3]`` (RGB) tensors of any numeric
    dtype holding values in [0, 255]. Returns float32 ``[N, H, W, 3]``.
    """

    def call(self, faces):
        x = ops.cast(faces, "float32")
        channels = x.shape[-1]
        if channels == 1:
            gray = x
        elif channels == 3:
            gray = ops.sum(x * ops.convert_to_tensor(LUMA_WEIGHTS), axis=-1, keepdims=True)
        elif channels is not None:
            raise ValueError(f"faces must have 1 or 3 channels, got {channels}")
        else:
            gray = _gray_of_unknown_channels(x)
        gray = gray / 255.0
        rgb = ops.concatenate([gray, gray, gray], axis=-1)
        return (rgb - ops.convert_to_tensor(IMAGENET_MEAN)) / ops.convert_to_tensor(IMAGENET_STD)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (3,)


def _gray_of_unknown_channels(x):
    """Grayscale of a batch whose channel count (1 or 3) is only known when the graph
    runs: a SavedModel signature that accepts either. Only TensorFlow builds such
    graphs, so only this path needs it (the rest of the layer runs on any backend)."""
    import tensorflow as tf

    n = tf.shape(x)[-1]
    tf.debugging.assert_equal(tf.logical_or(tf.equal(n, 1), tf.equal(n, 3)), True,
                              message="faces must have 1 or 3 channels")
    return tf.cond(
        tf.equal(n, 3),
        lambda: tf.reduce_sum(x[..., :3] * tf.constant(LUMA_WEIGHTS), axis=-1, keepdims=True),
        lambda: x[..., :1],
    )
