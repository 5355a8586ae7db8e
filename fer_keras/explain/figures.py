"""Explanation figures: a per-face grid and per-class mean heatmaps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fer_keras.explain.cams import resize_map  # noqa: E402
from fer_keras.explain.overlay import overlay_heatmap  # noqa: E402


def face_grid(face: np.ndarray, heatmap: np.ndarray, probabilities: Sequence[float], classes: Sequence[str],
              path: Path, method: str = "gradcam", alpha: float = 0.4) -> None:
    """face | heatmap | overlay, titled with the top-3 probabilities."""
    gray = face.reshape(face.shape[:2]) if face.shape[-1] == 1 else face
    hm = resize_map(heatmap, face.shape[1], face.shape[0])
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    axes[0].imshow(gray, cmap="gray" if gray.ndim == 2 else None)
    axes[0].set_title("face")
    axes[1].imshow(hm, cmap="jet", vmin=0, vmax=1)
    axes[1].set_title(method)
    axes[2].imshow(overlay_heatmap(face, heatmap, alpha))
    top = np.argsort(probabilities)[::-1][:3]
    axes[2].set_title(", ".join(f"{classes[i]} {probabilities[i]:.0%}" for i in top), fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def class_mean_heatmaps(faces: np.ndarray, maps: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                        path: Path, method: str = "gradcam") -> dict[str, int]:
    """Mean face and mean heatmap per true class: where the model looks for each emotion.

    Returns:
        faces averaged per class.
    """
    size = faces.shape[1]
    up = np.stack([resize_map(m, size, size) for m in maps])
    fig, axes = plt.subplots(2, len(classes), figsize=(2.2 * len(classes), 4.6))
    counts = {}
    for i, name in enumerate(classes):
        mask = labels == i
        counts[name] = int(mask.sum())
        for row in (0, 1):
            axes[row, i].axis("off")
        if not mask.any():
            axes[0, i].set_title(f"{name} (none)")
            continue
        mean_face = faces[mask].astype(np.float32).mean(0)[..., 0]
        axes[0, i].imshow(mean_face, cmap="gray")
        axes[0, i].set_title(f"{name} (n={mask.sum()})", fontsize=9)
        axes[1, i].imshow(mean_face, cmap="gray")
        axes[1, i].imshow(up[mask].mean(0), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    fig.suptitle(f"mean {method} map per true class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return counts
