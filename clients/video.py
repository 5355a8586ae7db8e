"""``python -m clients.video``: emotions, tracks and Grad-CAM on a video, an image folder or a camera.

Examples::

    python -m clients.video clip.mp4                                  # embedded local server, shipped GiMeFive
    python -m clients.video clip.mp4 --model-base-path models/gimefive  # ... serving your own exports
    python -m clients.video clip.mp4 --server 127.0.0.1:8500 --out-dir runs/video/clip
    python -m clients.video frames/ --detector haar --explain none
    python -m clients.video --camera 0
    python -m clients.video clip.mp4 --backend litert --model-file edge/fer2013-int8.tflite --explain none

Writes, under --out-dir (default runs/video/<input name>): annotated.mp4,
frames.jsonl (one record per frame, written as it goes), summary.json and
summary.png, one figure of the whole video (each main face track's emotions
over time, shot cuts marked); with --track-plots also one
timeline_track<N>.png per track. TensorFlow's native log lines are hidden
unless --verbose.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from clients.settings import EXPLAIN_CHOICES, AnalyzerConfig
from fer_keras.config import DEFAULT_MODEL, DEFAULT_PRETRAINED
from fer_keras.detection import DETECTORS
from fer_keras.explain.methods import SERVED_METHODS, methods_help

D = AnalyzerConfig()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m clients.video", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", help="a video file or a folder of images")
    p.add_argument("--camera", type=int, default=None, help="camera index instead of an input file")
    o = p.add_argument_group("outputs")
    o.add_argument("--out-dir", default=None, help="output folder. Default: runs/video/<input name>")
    o.add_argument("--out", default=None, help="annotated video path (.mp4 or .avi). Default: <out-dir>/annotated.mp4")
    o.add_argument("--json", default=None, help="JSON-lines path. Default: <out-dir>/frames.jsonl")
    o.add_argument("--no-video", action="store_true", help="write no annotated video")
    o.add_argument(
        "--show", action="store_true", help="show frames in a window when a display exists (camera: default)"
    )
    o.add_argument("--limit", type=int, default=None, help="stop after this many frames")
    o.add_argument("--resume", action="store_true",
                   help="go on with a run that stopped early (a model server that stayed down, an interruption): "
                        "keep the frames its frames.jsonl holds in order and classified, analyse the rest; the "
                        "annotated video of the rest goes to annotated.from-<frame>.mp4")
    o.add_argument("--track-plots", action="store_true",
                   help="also write one timeline_track<N>.png per face track (summary.png always shows the main ones)")
    o.add_argument("--verbose", action="store_true", help="show TensorFlow's native log lines")
    s = p.add_argument_group("server")
    s.add_argument("--backend", choices=("server", "litert"), default="server",
                   help="server: a model server (embedded, or --server); litert: a LiteRT file on this machine "
                        "(--model-file; python -m fer_keras.export --format litert), no server. Default: %(default)s")
    s.add_argument("--model-file", default=None, help="with --backend litert: the .tflite file")
    s.add_argument("--server", default=None,
                   help="TF Serving gRPC address host:port. Default: start an embedded local server")
    s.add_argument("--model-base-path", default=None,
                   help="SavedModel versions the embedded server serves. Default: the shipped model --pretrained")
    s.add_argument("--pretrained", default=DEFAULT_PRETRAINED,
                   help="shipped model the embedded server serves when no --model-base-path is given "
                        "(exported once to ~/.cache/fer-keras). Default: %(default)s")
    s.add_argument("--model", default=DEFAULT_MODEL, help="served model name. Default: %(default)s")
    s.add_argument("--version", type=int, default=None, help="model version number")
    s.add_argument("--version-label", default=None, help="model version label (stable, canary)")
    s.add_argument("--timeout", type=float, default=10.0, help="per-call deadline in seconds. Default: %(default)s")
    s.add_argument(
        "--retries",
        type=int,
        default=10,
        help="retries on UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED (backoff doubling to 5 s). Default: %(default)s",
    )
    s.add_argument("--max-batch", type=int, default=64, help="most faces per Predict call. Default: %(default)s")
    s.add_argument("--tls-ca", default=None, help="PEM root certificate: connect with TLS")
    s.add_argument("--tls-cert", default=None, help="PEM client certificate, for a server that verifies clients")
    s.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    a = p.add_argument_group("analysis")
    a.add_argument("--detector", choices=tuple(DETECTORS), default=D.detector,
                   help="face detector: blazeface (fast), mtcnn (slow, best on small faces), haar; none: frames "
                        "are face crops. Default: %(default)s")
    a.add_argument("--no-cuts", action="store_true",
                   help="do not look for shot cuts (by default every track ends at a cut and the next frame is "
                        "searched for faces)")
    a.add_argument("--detect-every", type=int, default=D.detect_every,
                   help="detect every k frames, track in between. Default: %(default)s")
    a.add_argument("--explain", choices=EXPLAIN_CHOICES, default=D.explain, metavar="METHOD",
                   help=f"the served explanation method drawn over each face: {methods_help(SERVED_METHODS)}; "
                        "or none. Default: %(default)s")
    a.add_argument("--explain-every", type=int, default=D.explain_every,
                   help="refresh each face's heatmap every n frames. Default: %(default)s")
    a.add_argument("--explain-model", default=None,
                   help="a .keras model to explain locally with tf-keras-vis instead of the server's signature")
    a.add_argument("--smoothing", type=float, default=D.smoothing,
                   help="weight of the newest frame in each track's moving average (1 = none). Default: %(default)s")
    a.add_argument("--batch-frames", type=int, default=D.batch_frames,
                   help="frames whose faces share one Predict call. Default: %(default)s")
    a.add_argument(
        "--max-in-flight", type=int, default=D.max_in_flight, help="Predict calls in flight. Default: %(default)s"
    )
    a.add_argument("--margin", type=float, default=D.margin,
                   help="crop margin around boxes, as a share of the box side (0 reproduces FER2013's framing "
                        "from MTCNN or Haar boxes). Default: %(default)s")
    a.add_argument("--box-smoothing", type=float, default=D.box_smoothing,
                   help="weight of a new detection against its track's predicted box (1 = raw detector boxes). "
                        "Default: %(default)s")
    a.add_argument("--confirm-score", type=float, default=D.confirm_score,
                   help="a face detected with a lower score is shown only after a second detection. "
                        "Default: the detector's own (verified BlazeFace 0: O-Net is the second opinion; MTCNN 0.9)")
    a.add_argument("--min-similarity", type=float, default=D.min_similarity,
                   help="least appearance correlation for a detection to continue a track (0: boxes only). "
                        "Default: %(default)s")
    a.add_argument("--align", action=argparse.BooleanOptionalAction, default=D.align,
                   help="frame each face from its eyes and mouth (scaled and centred as FER2013) instead "
                        "of the detector's box; --no-align: the box. Default: %(default)s")
    a.add_argument("--level", action=argparse.BooleanOptionalAction, default=D.level,
                   help="with --align, also turn each crop to level the eyes (FER2013's faces are not levelled; "
                        "levelled crops scored lower, BENCHMARKS.md). Default: %(default)s")
    a.add_argument("--second-look", action=argparse.BooleanOptionalAction, default=D.second_look,
                   help="BlazeFace looks at each face again in a window 2.5 times its box, where a box at the "
                        "wrong scale comes out at the face's own; --no-second-look saves one BlazeFace pass per "
                        "face at each detection. Default: %(default)s")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.input is None and args.camera is None:
        build_parser().error("give an INPUT video or folder, or --camera N")
    if bool(args.tls_cert) != bool(args.tls_key):
        build_parser().error("--tls-cert and --tls-key go together")
    if args.backend == "litert" and (not args.model_file or args.server or args.model_base_path):
        build_parser().error("--backend litert needs --model-file FILE.tflite, and no --server or --model-base-path")
    if args.resume and args.camera is not None:
        build_parser().error("--resume goes on with a video file or an image folder, not a camera")
    if args.model_file and args.backend != "litert":
        build_parser().error("--model-file goes with --backend litert")
    for flag in ("tls_ca", "tls_cert", "tls_key"):
        if getattr(args, flag) and not Path(getattr(args, flag)).is_file():
            build_parser().error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: no such file")
    from fer_keras.quiet import load_tensorflow_quietly, native_stderr_to_file

    with native_stderr_to_file(not args.verbose):
        load_tensorflow_quietly(False)
        from clients.analyzer import SinkError, VideoAnalyzer, plot_timelines, plot_video_summary, resume_point
        from clients.client import ClientError, EmotionClient, tls_credentials
        from clients.sources import SourceError, open_source
        from serving.local.embedded import start_embedded_server

    if not args.verbose:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's per-packet complaints; skips are listed below
    server = None
    expected = (SourceError, ClientError, SinkError, ValueError, FileNotFoundError, OSError)
    try:
        config = AnalyzerConfig(
            detector=args.detector,
            detect_every=args.detect_every,
            explain=args.explain,
            explain_every=args.explain_every,
            smoothing=args.smoothing,
            batch_frames=args.batch_frames,
            max_in_flight=args.max_in_flight,
            margin=args.margin,
            align=args.align,
            level=args.level,
            second_look=args.second_look,
            box_smoothing=args.box_smoothing,
            confirm_score=args.confirm_score,
            cuts=not args.no_cuts,
            min_similarity=args.min_similarity,
        )
        source = open_source(args.input, args.camera)
        with native_stderr_to_file(not args.verbose, expected):  # the server and detector load quietly
            address = args.server
            if args.backend == "litert":
                from clients.edge import LiteRTClient

                client, address = LiteRTClient(args.model_file, max_batch=args.max_batch), args.model_file
            elif address is None:
                base = args.model_base_path
                if base is None:
                    from fer_keras.exporting import serving_base

                    base = str(serving_base(args.pretrained))
                server = start_embedded_server(args.model, base)
                address = server.address
            if args.backend == "server":
                client = EmotionClient(address, args.model, version=args.version, version_label=args.version_label,
                                       timeout=args.timeout, retries=args.retries, max_batch=args.max_batch,
                                       credentials=tls_credentials(args.tls_ca, args.tls_cert, args.tls_key)
                                       if (args.tls_ca or args.tls_cert) else None)
            explainer = (local_explainer(args.explain_model, args.explain)
                         if args.explain_model and args.explain != "none" else None)
            analyzer = VideoAnalyzer(client, config, explainer=explainer)
        out_dir = Path(args.out_dir or Path("runs") / "video" / source.name)
        out_dir.mkdir(parents=True, exist_ok=True)
        jsonl = args.json or out_dir / "frames.jsonl"
        first = resume_point(jsonl)[0] if args.resume else 0
        video = None if args.no_video else (args.out or out_dir / (f"annotated.from-{first}.mp4" if first
                                                                   else "annotated.mp4"))
        show = args.show or (args.camera is not None and bool(os.environ.get("DISPLAY")))
        summary = analyzer.run(source, video_out=video, jsonl=jsonl, show=show, limit=args.limit, resume=args.resume)
        summary.update(video=str(video) if video else None, jsonl=str(jsonl), server=address)
        tracks = list(analyzer.tracker.all_tracks.values())
        summary["figure"] = str(
            plot_video_summary(summary, tracks, client.classes, source.fps, out_dir / "summary.png")
        )
        if args.track_plots:
            summary["timelines"] = [str(p) for p in plot_timelines(summary["tracks"], tracks, client.classes,
                                                                   source.fps, out_dir)]
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    except expected as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: frames.jsonl holds every frame finished so far", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop(grace=1.0)
    if summary["unreadable_frames"]:
        bad = summary["unreadable_frames"]
        shown = ", ".join(bad[:5]) + (f" ... {bad[-1]}" if len(bad) > 5 else "")
        print(f"warning: {len(bad)} unreadable frame(s) skipped ({shown}); summary.json lists them", file=sys.stderr)
    if summary.get("resumed_from"):
        print(f"resumed at frame {summary['resumed_from']} (the frames before it kept from the earlier run)")
    print(f"{summary['frames']} frames, {len(summary['cuts'])} cuts, {len(summary['tracks'])} face tracks, "
          f"{summary['faces_classified']} faces, {summary['frames_per_second']} frames/s -> {out_dir}")
    return 0


def local_explainer(path: str, method: str = "gradcam"):
    """``method`` with tf-keras-vis on a local .keras copy of the served model."""
    from fer_keras.explain.cams import explain
    from fer_keras.loading import load_classifier

    model = load_classifier(path)
    return lambda crops: explain(model, crops, method).maps


if __name__ == "__main__":
    sys.exit(main())
