"""``python -m fer_keras.explain``: explanation images, per-class maps and faithfulness.

Examples::

    # overlay + grid per image (face crops; --detect finds faces in full photos first)
    python -m fer_keras.explain photo.jpg faces/ --model runs/fer2013/best.keras --detect --out explained/
    # where the model looks for each emotion, over a labelled split
    python -m fer_keras.explain --class-means --model runs/fer2013/best.keras \
        --data fer2013=../shared/data/fer2013 --out maps/
    # deletion / insertion faithfulness of every method against a random baseline
    python -m fer_keras.explain --faithfulness --model runs/fer2013/best.keras \
        --data fer2013=../shared/data/fer2013 --out faith/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_keras.cli import add_data_arguments, data_config
from fer_keras.config import DEFAULT_PRETRAINED
from fer_keras.data.readers.common import IMAGE_EXTENSIONS, DatasetError
from fer_keras.detection import DETECTORS, FER_MARGIN, LEVEL_EYES
from fer_keras.explain.methods import DEFAULT_METHOD, methods_help
from fer_keras.explain.methods import METHODS as METHOD_NAMES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.explain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", help="image files or folders of images to explain")
    p.add_argument(
        "--model",
        default=DEFAULT_PRETRAINED,
        help="a trained .keras model or a shipped model name. Default: %(default)s (shipped with the package)",
    )
    p.add_argument("--method", choices=METHOD_NAMES, default=DEFAULT_METHOD, metavar="METHOD",
                   help=f"explanation method: {methods_help()}. Default: %(default)s")
    p.add_argument("--target", default=None, help="class name to explain instead of the predicted class")
    p.add_argument("--layer", default=None,
                   help="target layer of the CAM methods. Default: the activation after last_conv (block5_relu on "
                        "GiMeFive); last_conv: the raw fifth convolution before batch norm and ReLU, as the paper "
                        "hooks it (blank Grad-CAM maps on many faces)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--detect", action="store_true", help="find faces first (for full photos), see --detector")
    p.add_argument("--detector", choices=[d for d in DETECTORS if d != "none"], default="blazeface",
                   help="face detector of --detect. Default: %(default)s")
    p.add_argument("--min-score", type=float, default=None,
                   help="least detection score of a face to explain (one photo has no second detection to confirm "
                        "a doubtful face). Default: the detector's confirm score (0 for BlazeFace, whose faces O-Net "
                        "confirms; MTCNN 0.9)")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                   help="with --detect: frame each face from its eyes and mouth (scaled and centred as "
                        "FER2013) instead of the detector's box; --no-align: the box. Default: %(default)s")
    p.add_argument("--level", action=argparse.BooleanOptionalAction, default=LEVEL_EYES,
                   help="with --detect and --align: also turn each crop to level the eyes. Default: %(default)s")
    p.add_argument("--margin", type=float, default=FER_MARGIN,
                   help="crop margin around detected faces (0 reproduces FER2013's framing). Default: %(default)s")
    p.add_argument("--alpha", type=float, default=0.4, help="heatmap opacity in overlays. Default: %(default)s")
    modes = p.add_argument_group("dataset modes (use --data)")
    modes.add_argument("--class-means", action="store_true", help="per-class mean heatmap figure over a labelled split")
    modes.add_argument("--faithfulness", action="store_true",
                       help="deletion/insertion areas per method and class against a random-map baseline")
    modes.add_argument("--sanity", action="store_true",
                       help="cascading randomisation (Adebayo et al. 2018): the rank correlation of each method's "
                            "maps with the trained model's as the layers are randomised from the top, with a "
                            "pass/fail verdict per method")
    modes.add_argument("--quantus", type=int, default=0, metavar="N",
                       help="with --faithfulness: cross-check the deletion figures on the first N faces with "
                            "Quantus's PixelFlipping (Quantus installed by hand, see fer_keras/explain/crosscheck.py)")
    modes.add_argument("--methods", default=",".join(METHOD_NAMES),
                       help="methods compared by --faithfulness and --sanity. Default: %(default)s")
    modes.add_argument("--split", default="test", choices=("train", "val", "test"), help="Default: %(default)s")
    modes.add_argument(
        "--limit", type=int, default=600, help="faces used from the split (stratified). Default: %(default)s"
    )
    modes.add_argument("--steps", type=int, default=16, help="deletion/insertion steps. Default: %(default)s")
    modes.add_argument("--seed", type=int, default=0, help="seed for sampling and tie-breaking. Default: %(default)s")
    add_data_arguments(p)
    return p


def image_files(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (recursively) in named folders."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return files


def explain_images(args, model, taxonomy) -> int:

    from fer_keras.detection import WholeImage, make_detector, read_rgb
    from fer_keras.explain.analysis import UNFRAMED, Framing, explain_faces, face_record
    from fer_keras.explain.cams import explain
    from fer_keras.explain.figures import face_grid
    from fer_keras.explain.overlay import annotate_face

    detector = make_detector(args.detector) if args.detect else WholeImage()
    min_score = args.min_score if args.min_score is not None else getattr(detector, "confirm_score", 0.0)
    size = model.input_shape[1]
    target = None if args.target is None else taxonomy.classes.index(args.target)
    out = Path(args.out)
    written, failed, blank = 0, [], {}
    for path in image_files(args.images):
        try:
            rgb = read_rgb(str(path))
        except ValueError as err:
            failed.append(str(err))
            print(f"skipped: {err}", file=sys.stderr)
            continue
        if min(rgb.shape[:2]) < 16:
            failed.append(str(path))
            print(f"skipped: {path} is {rgb.shape[1]}x{rgb.shape[0]} pixels, too small to hold a face", file=sys.stderr)
            continue
        found = detector.detect(rgb)
        faces = [f for f in found if f.score >= min_score]
        if not faces:
            weak = f" ({len(found)} candidate(s) scored below {min_score:.2f}, see --min-score)" if found else ""
            print(f"no face found in {path}{weak}", file=sys.stderr)
            continue
        framing = Framing(args.margin, args.align, args.level) if args.detect else UNFRAMED
        crops = framing.crops(rgb, faces, size)
        result = explain(model, crops, args.method, class_ids=target, layer=args.layer)
        explained = explain_faces(args.method, result.maps, result.class_ids, faces, size, framing)
        canvas = rgb.copy()
        for i, face in enumerate(faces):
            label = (f"#{i} " if len(faces) > 1 else "") + (f"face {face.score:.2f}" if args.detect else "")
            annotate_face(canvas, face.box, result.probabilities[i], taxonomy.classes, heatmap=result.maps[i],
                          landmarks=face.landmarks, alpha=args.alpha, label=label or None,
                          avoid=[f.box for j, f in enumerate(faces) if j != i])
            suffix = f"_face{i}" if len(faces) > 1 else ""
            face_grid(crops[i], result.maps[i], result.probabilities[i], taxonomy.classes,
                      out / f"{path.stem}{suffix}_grid.png", args.method, args.alpha)
        import cv2

        cv2.imwrite(str(out / f"{path.stem}_overlay.png"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        records = [face_record(taxonomy.classes, face, framing, result.probabilities[i], explanation=explained[i])
                   for i, face in enumerate(faces)]
        for explanation in explained:
            blank.setdefault(taxonomy.classes[explanation.class_id], []).append(explanation.blank)
        (out / f"{path.stem}_faces.json").write_text(json.dumps(records, indent=1))
        written += 1
    maps = sum(map(len, blank.values()))
    print(f"explained {written} image(s) into {out}; {len(failed)} unreadable or too small; "
          f"{args.method} maps blank (constant): {sum(map(sum, blank.values()))} of {maps}"
          + (" (" + ", ".join(f"{c} {sum(v)}/{len(v)}" for c, v in sorted(blank.items())) + ")" if maps else ""))
    if not written:
        print("error: nothing was explained", file=sys.stderr)
        return 1
    return 0


def sample_split(faces, limit: int, seed: int):
    """At most ``limit`` faces, about equally many per class."""
    import numpy as np

    rng = np.random.default_rng(seed)
    k = faces.taxonomy.num_classes
    picked = []
    for c in range(k):
        idx = np.flatnonzero(faces.labels == c)
        rng.shuffle(idx)
        picked.append(idx[: max(1, limit // k)])
    return faces.select(np.sort(np.concatenate(picked)))


def dataset_modes(args, model, taxonomy) -> int:
    import numpy as np

    from fer_keras.data.sources import load_data
    from fer_keras.explain.cams import explain
    from fer_keras.explain.faithfulness import faithfulness_report, report_table
    from fer_keras.explain.figures import class_mean_heatmaps, faithfulness_by_class, region_bars
    from fer_keras.explain.regions import region_table, table_markdown

    data = load_data(data_config(args, args.seed, classes=taxonomy.name))
    if args.split not in data.splits:
        raise DatasetError(f"the data has no {args.split} split")
    faces = sample_split(data.splits[args.split], args.limit, args.seed)
    out = Path(args.out)
    if args.class_means:
        result = explain(model, faces.images, args.method, layer=args.layer)
        counts = class_mean_heatmaps(faces.images, result.maps, faces.labels, taxonomy.classes,
                                     out / f"class_means_{args.method}.png", args.method)
        table = region_table(result.maps, faces.labels, taxonomy.classes, faces.images.shape[1])
        (out / f"regions_{args.method}.json").write_text(json.dumps({"method": args.method, **table}, indent=1))
        region_bars(table, out / f"regions_{args.method}.png", args.method)
        print(f"wrote {out / f'class_means_{args.method}.png'} ({counts}), {out / f'regions_{args.method}.json'} "
              f"and .png")
        print(f"share of the {args.method} map's mass per region (mean over each true class's faces):")
        print(table_markdown(table))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHOD_NAMES)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHOD_NAMES)}")
    if args.sanity:
        from fer_keras.explain.sanity import PASS_BELOW, cascading_randomisation, verdicts

        report = cascading_randomisation(
            model, faces.images, methods, lambda m, method, x, ids: explain(m, x, method, class_ids=ids,
                                                                            layer=args.layer).maps, seed=args.seed)
        report.update(verdict=verdicts(report, "last_conv"), pass_below=PASS_BELOW, model=str(args.model),
                      split=args.split)
        (out / "sanity.json").write_text(json.dumps(report, indent=1))
        plot_sanity(report, out / "sanity.png")
        print("mean rank correlation with the trained model's maps, layers randomised cumulatively from the top:")
        print("| layer randomised | " + " | ".join(methods) + " |\n|---|" + "---|" * len(methods))
        for i, layer in enumerate(report["layers"]):
            print(f"| {layer} | " + " | ".join(f"{report['methods'][m][i]:.2f}" for m in methods) + " |")
        print("verdict (below " + f"{PASS_BELOW} from last_conv down): "
              + ", ".join(f"{m} {'passes' if ok else 'FAILS'}" for m, ok in report["verdict"].items()))
    if args.faithfulness:

        def predict(x):
            return np.asarray(model.predict(x, batch_size=256, verbose=0)["probabilities"])

        maps_of: dict = {}
        report = faithfulness_report(
            predict, lambda m, x, ids: explain(model, x, m, class_ids=ids, layer=args.layer).maps,
            faces.images, faces.labels, taxonomy.classes, methods, steps=args.steps, seed=args.seed,
            maps_out=maps_of)
        report.update(model=str(args.model), data=list(args.data), split=args.split)
        (out / "faithfulness.json").write_text(json.dumps(report, indent=1))
        plot_curves(report, out / "faithfulness.png")
        faithfulness_by_class(faces.images, {m: maps_of[m] for m in methods}, faces.labels, taxonomy.classes, report,
                              out / "faithfulness_by_class.png")
        if args.quantus:
            quantus_check(args, model, faces, maps_of, report, out)
        print(report_table(report))
    return 0


def quantus_check(args, model, faces, maps_of: dict, report: dict, out: Path) -> None:
    """--quantus: the first faces' deletion by Quantus beside ours (same faces, maps and classes)."""
    import numpy as np

    from fer_keras.explain.crosscheck import compare_with_quantus, quantus_available

    if not quantus_available():
        raise ValueError("--quantus needs Quantus, which is not installed (see fer_keras/explain/crosscheck.py for "
                         "why it is not a dependency and how to install it)")
    n = min(args.quantus, len(faces.images))
    x = faces.images[:n].astype(np.float32)

    def predict(batch):
        return np.asarray(model.predict(batch, batch_size=256, verbose=0)["probabilities"])

    result = compare_with_quantus(model, predict, x, {m: maps[:n] for m, maps in maps_of.items()},
                                  predict(x).argmax(1), args.steps, args.seed)
    (out / "quantus.json").write_text(json.dumps({"faces": n, "methods": result}, indent=1))
    print(f"deletion over the {args.steps} perturbed steps on the first {n} faces, ours vs Quantus PixelFlipping:")
    print("| maps | ours | Quantus | largest difference at one step |\n|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['ours']:.3f} | {r['quantus']:.3f} | {r['largest_step_difference']:.3f} |")


def plot_sanity(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for name, values in report["methods"].items():
        ax.plot(range(len(values)), values, "o-", label=f"{name} ({'passes' if report['verdict'][name] else 'fails'})")
    ax.axhline(report["pass_below"], color="grey", ls=":")
    ax.set_xticks(range(len(report["layers"])), report["layers"], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("rank correlation with the trained maps")
    ax.set_title(f"cascading randomisation, {report['n']} faces (layers randomised from the top, cumulatively)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in report["methods"].items():
        x = [i / report["steps"] for i in range(report["steps"] + 1)]
        style = ":" if name.startswith("random") else "-"
        axes[0].plot(x, r["deletion_curve"], style, label=f"{name} ({r['deletion']:.3f})")
        axes[1].plot(x, r["insertion_curve"], style, label=f"{name} ({r['insertion']:.3f})")
    for ax, title in zip(axes, ("deletion (lower is better)", "insertion (higher is better)")):
        ax.set_title(title)
        ax.set_xlabel("share of pixels")
        ax.set_ylabel("probability of the explained class")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.images or args.class_means or args.faithfulness or args.sanity):
        parser.error("name images to explain, or --class-means / --faithfulness / --sanity with --data")
    if args.quantus < 0 or (args.quantus and not args.faithfulness):
        parser.error(f"--quantus takes a number of faces (0 or more) and goes with --faithfulness; got {args.quantus}"
                     + ("" if args.faithfulness else " without --faithfulness"))
    from fer_keras import pretrained
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifier

    try:
        if not str(args.model).endswith(".keras") and str(args.model) not in pretrained.available():
            raise ModelLoadError(f"{args.model}: explanations need a .keras model file or a shipped model name "
                                 f"({', '.join(pretrained.available())})")
        model = load_classifier(args.model)
        taxonomy = infer_taxonomy(model)
        if args.target is not None and args.target not in taxonomy.classes:
            raise ValueError(f"--target {args.target!r} is not one of {', '.join(taxonomy.classes)}")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        code = explain_images(args, model, taxonomy) if args.images else 0
        if args.class_means or args.faithfulness or args.sanity:
            code = dataset_modes(args, model, taxonomy) or code
    except (ModelLoadError, DatasetError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
