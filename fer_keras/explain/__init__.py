"""Explanations: Grad-CAM family maps, overlays, figures and measured faithfulness.

``from fer_keras.explain import explain`` gives saliency maps for a batch of
faces; ``python -m fer_keras.explain`` is the command. Submodules load
TensorFlow lazily, so ``--help`` stays quick.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "explain": "cams", "Explanation": "cams", "METHODS": "methods", "normalize_maps": "cams", "resize_map": "cams",
    "gradcam_model": "cams", "cam_tape": "cams", "SERVED_METHODS": "methods", "CAM_METHODS": "methods",
    "overlay_heatmap": "overlay", "annotate_face": "overlay", "colorize": "overlay",
    "face_grid": "figures", "class_mean_heatmaps": "figures",
    "faithfulness_report": "faithfulness", "perturbation_curves": "faithfulness",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fer_keras.explain.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fer_keras.explain' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
