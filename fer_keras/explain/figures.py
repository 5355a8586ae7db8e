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


def faithfulness_by_class(faces: np.ndarray, maps_of: dict[str, np.ndarray], labels: np.ndarray,
                          classes: Sequence[str], report: dict, path: Path) -> None:
    """One row per class: the mean face under each method's mean map, then that class's deletion and
    insertion curves (every method and the random baselines)."""
    size = faces.shape[1]
    methods = list(maps_of)
    cols = len(methods) + 2
    fig, axes = plt.subplots(len(classes), cols, figsize=(2.0 * cols + 2, 2.1 * len(classes)), squeeze=False)
    x = np.linspace(0, 1, report["steps"] + 1)
    for row, name in enumerate(classes):
        mask = labels == row
        for ax in axes[row, :len(methods)]:
            ax.axis("off")
        if not mask.any():
            continue
        mean_face = faces[mask].astype(np.float32).mean(0)[..., 0]
        for col, method in enumerate(methods):
            up = np.stack([resize_map(m, size, size) for m in maps_of[method][mask]])
            axes[row, col].imshow(mean_face, cmap="gray")
            axes[row, col].imshow(up.mean(0), cmap="jet", alpha=0.5)
            if row == 0:
                axes[row, col].set_title(method, fontsize=8)
        axes[row, 0].text(-0.1, 0.5, f"{name}\n(n={mask.sum()})", transform=axes[row, 0].transAxes, ha="right",
                          va="center", fontsize=8)
        for col, curve in ((len(methods), "deletion"), (len(methods) + 1, "insertion")):
            ax = axes[row, col]
            for method, r in report["methods"].items():
                per = r["per_class"].get(name)
                if per:
                    ax.plot(x, per[f"{curve}_curve"], ":" if method.startswith("random") else "-", lw=1,
                            label=f"{method} {per[curve]:.2f}")
            ax.set_ylim(0, 1)
            ax.tick_params(labelsize=6)
            ax.legend(fontsize=5)
            if row == 0:
                ax.set_title(f"{curve} (area)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def region_bars(table: dict, path: Path, method: str) -> None:
    """Stacked bars per class: the share of the map's mass on eyes, nose, mouth and elsewhere, beside
    a bar of each region's share of the crop's area (what a uniform map would give)."""
    names = ["eyes", "nose", "mouth", "elsewhere"]
    colours = ["#1f77b4", "#2ca02c", "#d62728", "#c7c7c7"]
    rows = {**{f"{c} (n={r['n']})": r for c, r in table["per_class"].items()}, "area of the crop": table["area"]}
    fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 2, 3.8))
    bottom = np.zeros(len(rows))
    for name, colour in zip(names, colours):
        values = np.array([100 * r[name] for r in rows.values()])
        ax.bar(list(rows), values, bottom=bottom, color=colour, label=name)
        for i, v in enumerate(values):
            if v >= 6:
                ax.text(i, bottom[i] + v / 2, f"{v:.0f}", ha="center", va="center", fontsize=7)
        bottom += values
    ax.set_ylabel("% of the map's mass")
    ax.set_title(f"where the {method} map lies, per true class")
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
