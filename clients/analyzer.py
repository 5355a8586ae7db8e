"""The video / camera emotion analyzer: detect, track, classify, explain, annotate, write.

Stages run concurrently: a reader thread decodes frames into a bounded queue
and marks shot cuts (``clients.cuts``); the main thread detects faces every k
frames and on the first frame of every shot (tracking boxes in between, every
track ending at a cut),
crops every tracked face of a group of frames and sends them as one Predict
call, keeping several calls in flight; results come back in order, are
smoothed per track, get Grad-CAM heatmaps refreshed every few frames, are
drawn and written (JSON lines as they go) and handed to a writer thread that
encodes the annotated video.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from clients.client import ClientError, EmotionClient
from clients.cuts import ShotCutDetector
from clients.settings import AnalyzerConfig
from clients.sources import FrameSource, VideoSink
from clients.streams import StreamState
from clients.tracking import Track, appearance
from fer_keras.detection import Detector, Face, make_detector
from fer_keras.explain.analysis import FaceExplanation, Framing, explain_faces, face_record
from fer_keras.explain.overlay import annotate_face


class SinkError(RuntimeError):
    """The annotated video could not be written (a full disk, a closed pipe)."""


class ServerLost(ClientError):
    """The model server could not classify a group of frames within the client's retries; frames.jsonl
    marks those frames ``"classified": false`` and the run can go on later with ``resume``."""


def resume_point(jsonl: str | Path) -> tuple[int, int]:
    """Where a run that wrote ``jsonl`` can go on: the number of frames at its start recorded in order and
    classified (the records a resumed run keeps), and the largest track number among them."""
    kept, last_track = 0, 0
    try:
        lines = Path(jsonl).read_text().splitlines()
    except FileNotFoundError:
        return 0, 0
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a crash
            break
        if not isinstance(record, dict) or record.get("frame") != kept or record.get("classified") is False:
            break
        kept += 1
        last_track = max([last_track, *(f.get("track") or 0 for f in record.get("faces", []))])
    return kept, last_track


STAGES = ("decode", "cuts", "detect", "crop", "classify", "explain", "annotate", "encode")
_END = object()


@dataclass
class FaceResult:
    track_id: int
    face: Face
    probabilities: np.ndarray
    smoothed: np.ndarray
    explanation: FaceExplanation | None = None  # made on this frame


@dataclass
class FrameResult:
    index: int
    time: float
    faces: list[FaceResult] = field(default_factory=list)

    def to_json(self, classes, framing: Framing) -> dict:
        return {
            "frame": self.index, "time": round(self.time, 4),
            "faces": [face_record(classes, f.face, framing, f.probabilities, track=f.track_id, smoothed=f.smoothed,
                                  explanation=f.explanation) for f in self.faces],
        }


@dataclass
class _Chunk:
    frames: list[tuple[int, np.ndarray]]
    faces: list[list[tuple[Track, Face]]]  # per frame: (track, its box at that frame)
    crops: np.ndarray
    future: object
    stale: list[tuple[Track, int, int, Face]] = field(default_factory=list)  # tracks explained: frame, row
    maps: Future | None = None  # their explanation maps, computed while the next frames are detected


class VideoAnalyzer:
    """Runs the pipeline over a :class:`FrameSource`.

    Args:
        client: a connected :class:`EmotionClient`.
        config: pipeline settings.
        detector: a face detector (default: ``config.detector``).
        explainer: ``crops -> heatmaps`` (default: the server's signature for ``config.explain``).
    """

    def __init__(self, client: EmotionClient, config: AnalyzerConfig | None = None,
                 detector: Detector | None = None, explainer: Callable[[np.ndarray], np.ndarray] | None = None):
        config = config or AnalyzerConfig()
        self.client = client
        self.config = config
        once = config.detector == "blazeface" and not config.second_look
        self.detector = detector or make_detector(config.detector, **({"second_look": None} if once else {}))
        if config.explain != "none" and explainer is None:
            client.explanation_signature(config.explain)  # a server without it: one clear error before any frame
            explainer = lambda crops: client.explain(crops, config.explain)[1]  # noqa: E731
        self.explainer = explainer if config.explain != "none" else None
        confirm = (
            config.confirm_score if config.confirm_score is not None else getattr(self.detector, "confirm_score", 0.0)
        )
        self.stream = StreamState(config, confirm)
        self.framing = Framing(config.margin, config.align, config.level)
        self.times: dict[str, float] = defaultdict(float)
        self.classes = client.classes
        self.cuts: list[int] = []
        self.regions: dict[str, list[dict]] = {}  # emotion -> region shares of each heatmap drawn for it
        self._last_detection = -10**9
        self._last_cut = 0  # the first shot starts at frame 0
        self._sink_error: Exception | None = None
        self._explanation_asked: dict[int, int] = {}  # track id -> the frame its latest explanation was asked for
        self._explain_pool: ThreadPoolExecutor | None = None
        self.resumed_from: int | None = None  # the first frame a resumed run analysed

    @property
    def tracker(self):
        return self.stream.tracker

    # -- stages ----------------------------------------------------------------------
    def _reader(self, source: FrameSource, frames: queue.Queue, stop: threading.Event, skip: int = 0) -> None:
        cuts = ShotCutDetector() if self.config.cuts else None
        try:
            index = 0
            while not stop.is_set():
                start = time.perf_counter()
                frame = next(source.frames, None)
                self.times["decode"] += time.perf_counter() - start
                if frame is None:
                    break
                if index < skip:  # done by the run this one resumes
                    index += 1
                    continue
                start = time.perf_counter()
                cut = cuts.update(frame) if cuts is not None else False
                self.times["cuts"] += time.perf_counter() - start
                frames.put((index, frame, cut))
                index += 1
        except Exception as err:  # handed to the main thread, which raises it
            frames.put(err)
        finally:
            frames.put(_END)

    def _writer(self, out: queue.Queue, sink: VideoSink | None, show: bool, stop: threading.Event) -> None:
        window = show
        while True:
            item = out.get()
            if item is _END:
                return
            start = time.perf_counter()
            if sink is not None:
                try:
                    sink.write(item)
                except Exception as err:  # a full disk, a closed pipe: the run stops with it (see _hand_over)
                    self._sink_error = err
                    stop.set()
                    return
            if window:
                window = _show(item, stop)
                if not window:
                    print("warning: no window: this OpenCV has no GUI (the opencv-python-headless wheel); "
                          "frames are still written. README, 'A camera window', says how to get one", file=sys.stderr)
            self.times["encode"] += time.perf_counter() - start

    def _hand_over(self, out: queue.Queue, item, writer: threading.Thread) -> None:
        """Queues ``item`` for the writer without waiting for ever: if the writer failed (or ended), the
        run stops with one error naming the cause; frames.jsonl keeps every frame written so far."""
        while True:
            if self._sink_error is not None:
                raise SinkError(f"writing the annotated video failed: {self._sink_error}; frames.jsonl holds "
                                "every frame finished before it") from self._sink_error
            if not writer.is_alive():
                raise SinkError("the video writer stopped")
            try:
                out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _crop(self, frame: np.ndarray, face: Face) -> np.ndarray:
        return self.framing.crop(frame, face, self.client.face_size)

    def _submit(self, batch: list[tuple[int, np.ndarray]], detections: dict[int, list[Face]], cuts: set[int]) -> _Chunk:
        per_frame, crops = [], []
        for index, frame in batch:
            if index in cuts:
                self.stream.cut()
            if index in detections:
                found = detections[index]
                start = time.perf_counter()
                looks = (
                    [appearance(self._crop(frame, face)) for face in found] if self.config.min_similarity > 0 else None
                )
                self.times["crop"] += time.perf_counter() - start
                self.stream.observe(index, found, looks)
            live = self.stream.live(index)
            start = time.perf_counter()
            crops += [self._crop(frame, face) for _, face in live]
            self.times["crop"] += time.perf_counter() - start
            per_frame.append(live)
        stack = np.stack(crops) if crops else np.zeros((0, self.client.face_size, self.client.face_size, 1), np.uint8)
        chunk = _Chunk(batch, per_frame, stack, self.client.predict_async(stack) if len(stack) else None)
        self._ask_for_explanations(chunk)
        return chunk

    def _ask_for_explanations(self, chunk: _Chunk) -> None:
        """Asks for the maps of each track whose explanation will be older than ``explain_every`` frames
        at its latest frame in ``chunk``, on that frame's crop. The request runs beside the next frames'
        detection (the main thread collects it in :meth:`_refresh_heatmaps`): waiting for the maps on the main
        thread, the pipeline's slowest stage, cost it 9-12 ms a frame on a 2-core CPU (BENCHMARKS.md)."""
        if self.explainer is None:
            return
        latest: dict[int, tuple[Track, int, int, Face]] = {}
        row = 0
        for (index, _), faces in zip(chunk.frames, chunk.faces):
            for track, face in faces:
                latest[track.track_id] = (track, index, row, face)
                row += 1
        every = self.config.explain_every
        # A track asked for in a chunk still in flight is not stale again until explain_every frames later.
        chunk.stale = [e for e in latest.values() if self.stream.stale(e[0], e[1])
                       and e[1] - self._explanation_asked.get(e[0].track_id, -every) >= every]
        if chunk.stale:
            for track, index, _, _ in chunk.stale:
                self._explanation_asked[track.track_id] = index
            chunk.maps = self._explain_pool.submit(self.explainer, chunk.crops[[r for _, _, r, _ in chunk.stale]])

    def _finish(self, chunk: _Chunk, source: FrameSource) -> list[tuple[FrameResult, np.ndarray]]:
        start = time.perf_counter()
        probabilities = chunk.future.result().probabilities if chunk.future is not None else np.zeros((0, 0))
        self.times["classify"] += time.perf_counter() - start
        self._refresh_heatmaps(chunk, probabilities)
        results, row = [], 0
        start = time.perf_counter()
        for (index, frame), faces in zip(chunk.frames, chunk.faces):
            result = FrameResult(index, source.time_of(index))
            canvas = frame.copy()
            others = [face.box for _, face in faces]
            for track, face in faces:
                p = probabilities[row]
                row += 1
                smoothed = self.stream.smooth(track, p, index)
                fresh = track.explanation if track.heatmap_frame == index else None
                result.faces.append(FaceResult(track.track_id, face, p, smoothed, fresh))
                if fresh is not None:  # the heatmap explains this crop's own predicted class
                    self.regions.setdefault(self.classes[fresh.class_id], []).append(fresh.regions)
                annotate_face(canvas, face.box, smoothed, self.classes, heatmap=track.heatmap, landmarks=face.landmarks,
                              label=f"#{track.track_id}", alpha=self.config.alpha,
                              avoid=[b for b in others if b is not face.box])
            results.append((result, canvas))
        self.times["annotate"] += time.perf_counter() - start
        return results

    def _refresh_heatmaps(self, chunk: _Chunk, probabilities: np.ndarray) -> None:
        """Gives each track asked for in ``chunk`` its new explanation (for the class classified on the crop
        it explains), before the chunk's frames are drawn."""
        if chunk.maps is None:
            return
        start = time.perf_counter()
        stale = chunk.stale
        rows = [r for _, _, r, _ in stale]
        maps = chunk.maps.result()
        explained = explain_faces(self.config.explain, maps, probabilities[rows].argmax(-1),
                                  [face for _, _, _, face in stale], self.client.face_size, self.framing)
        for (track, index, _, _), explanation in zip(stale, explained):
            self.stream.refreshed(track, index, explanation)
        self.times["explain"] += time.perf_counter() - start

    # -- the run ---------------------------------------------------------------------
    def run(self, source: FrameSource, *, video_out: str | Path | None = None, jsonl: str | Path | None = None,
            show: bool = False, progress: bool = True, limit: int | None = None, resume: bool = False) -> dict:
        """Analyses every frame of ``source``.

        Where the model server cannot classify a group of frames within the client's retries (it stayed
        down), those frames are written to ``jsonl`` marked ``"classified": false`` with the reason, and
        :class:`ServerLost` stops the run; ``resume=True`` later keeps the frames ``jsonl`` holds in order
        and classified (:func:`resume_point`), drops the rest of the file, and analyses the source from the
        next frame (as the first frame of a shot: detected afresh, tracks numbered on).

        Args:
            source: frames to analyse.
            video_out: annotated video path (None: no video).
            jsonl: JSON-lines path, one record per frame, appended and flushed as frames finish.
            show: display frames in a window when a display exists.
            progress: show a progress bar with frames per second.
            limit: stop after this many frames.
            resume: go on from where an earlier run's ``jsonl`` stopped (``video_out`` gets the rest only).

        Returns:
            the run summary (see :meth:`summary`).
        """
        cfg = self.config
        frames: queue.Queue = queue.Queue(cfg.queue_size)
        out: queue.Queue = queue.Queue(cfg.queue_size)
        stop = threading.Event()
        skip = 0
        if resume:
            if not jsonl:
                raise ValueError("resume needs the JSON-lines file of the run to go on from")
            skip, last_track = resume_point(jsonl)
            kept = Path(jsonl).read_text().splitlines()[:skip] if skip else []
            Path(jsonl).write_text("".join(line + "\n" for line in kept))
            self.stream.tracker.number_after(last_track)
            self._last_cut = skip
            self.resumed_from = skip
        sink = VideoSink(video_out, source.fps) if video_out else None
        log = open(jsonl, "a" if resume else "w") if jsonl else None
        reader = threading.Thread(target=self._reader, args=(source, frames, stop, skip), daemon=True, name="reader")
        writer = threading.Thread(target=self._writer, args=(out, sink, show, stop), daemon=True, name="writer")
        reader.start()
        writer.start()
        bar = tqdm(total=min(source.count or limit or 0, limit or 10**12) or None, unit="frame", disable=not progress,
                   desc=source.name)
        inflight: deque[_Chunk] = deque()
        self._explain_pool = ThreadPoolExecutor(1, thread_name_prefix="explain")
        done_frames, faces_seen, started = 0, 0, time.perf_counter()

        def drain(keep: int) -> None:
            nonlocal done_frames, faces_seen
            while len(inflight) > keep:
                chunk = inflight.popleft()
                try:
                    analysed = self._finish(chunk, source)
                except ClientError as err:
                    raise self._server_lost(chunk, source, log, err) from err
                for result, canvas in analysed:
                    if log:
                        log.write(json.dumps(result.to_json(self.classes, self.framing)) + "\n")
                        log.flush()
                    self._hand_over(out, canvas, writer)
                    done_frames += 1
                    faces_seen += len(result.faces)
                    bar.update(1)
                bar.set_postfix(fps=f"{done_frames / max(time.perf_counter() - started, 1e-9):.1f}")

        try:
            finished = False
            while not finished:
                batch: list[tuple[int, np.ndarray]] = []
                cuts: set[int] = set()
                while len(batch) < cfg.batch_frames:
                    item = frames.get()
                    if item is _END:
                        finished = True
                        break
                    if isinstance(item, Exception):
                        raise item
                    index, frame, cut = item
                    batch.append((index, frame))
                    if cut:
                        cuts.add(index)
                    if limit is not None and index + 1 >= limit:
                        finished = True
                        break
                if not batch:
                    break
                to_detect = []
                for i, f in batch:
                    # Every k frames, and on the first two frames of each shot: the second confirms at once
                    # the faces the first found with a low score (see IoUTracker's confirm_score).
                    if i in cuts:
                        self._last_cut = i
                    if i in cuts or i == self._last_cut + 1 or i - self._last_detection >= cfg.detect_every:
                        to_detect.append((i, f))
                        self._last_detection = i
                self.cuts.extend(sorted(cuts))
                start = time.perf_counter()
                found = self.detector.detect_batch([f for _, f in to_detect]) if to_detect else []
                self.times["detect"] += time.perf_counter() - start
                inflight.append(self._submit(batch, {i: faces for (i, _), faces in zip(to_detect, found)}, cuts))
                drain(cfg.max_in_flight - 1)
            drain(0)
        finally:
            stop.set()
            self._explain_pool.shutdown(wait=False, cancel_futures=True)
            while reader.is_alive():  # unblock a reader waiting on a full queue
                try:
                    frames.get_nowait()
                except queue.Empty:
                    time.sleep(0.01)
            try:
                out.put(_END, timeout=5)
            except queue.Full:  # the writer is gone (it failed): nothing waits for the end marker
                pass
            writer.join(timeout=30)
            if sink:
                sink.close()
            if log:
                log.close()
            bar.close()
        elapsed = time.perf_counter() - started
        return self.summary(source, done_frames, faces_seen, elapsed)

    def _server_lost(self, chunk: _Chunk, source: FrameSource, log, err: ClientError) -> ServerLost:
        """Marks ``chunk``'s frames as not classified in the JSON lines; the error that stops the run."""
        first = chunk.frames[0][0]
        if log:
            for index, _ in chunk.frames:
                log.write(json.dumps({"frame": index, "time": round(source.time_of(index), 4), "classified": False,
                                      "error": str(err), "faces": []}) + "\n")
            log.flush()
        name = Path(log.name).name if log else "the JSON lines"
        return ServerLost(f"{err}; the frames from {first} on are not classified ({name} marks frames "
                          f"{first}-{chunk.frames[-1][0]} \"classified\": false); once the server is back, the same "
                          "command with --resume goes on from there")

    def summary(self, source: FrameSource, frames: int, faces: int, elapsed: float) -> dict:
        tracks = {}
        for track in self.tracker.all_tracks.values():
            if not track.history:
                continue
            mean = np.mean([p for _, p in track.history], axis=0)
            tracks[str(track.track_id)] = {
                "first_frame": track.history[0][0], "last_frame": track.history[-1][0], "frames": len(track.history),
                "dominant_emotion": self.classes[int(mean.argmax())],
                "mean_probabilities": {c: round(float(p), 4) for c, p in zip(self.classes, mean)},
            }
        return {
            "input": source.name, "frames": frames, "faces_classified": faces, "seconds": round(elapsed, 3),
            "frames_per_second": round(frames / elapsed, 2) if elapsed > 0 else None,
            "stage_ms_per_frame": {s: round(1000 * self.times[s] / max(frames, 1), 2) for s in STAGES},
            # "detect" split by the detector where it keeps its own times (BlazeFace: the passes, O-Net, the
            # second look)
            "detect_ms_per_frame": {k: round(1000 * v / max(frames, 1), 2)
                                    for k, v in getattr(self.detector, "seconds", {}).items()},
            "frames_expected": source.count, "unreadable_frames": list(source.skipped),
            "resumed_from": self.resumed_from,
            "classes": list(self.classes), "cuts": list(self.cuts),
            "tracks": tracks,
            "explanation_regions": {
                "method": self.config.explain if self.explainer is not None else None,
                "per_emotion": {emotion: {"maps": len(rows), **{k: round(float(np.mean([r[k] for r in rows])), 4)
                                                                for k in rows[0]}}
                                for emotion, rows in sorted(self.regions.items())}},
            "config": self.config.__dict__,
        }


def _show(frame: np.ndarray, stop: threading.Event) -> bool:
    """Shows a frame; returns False when no window can be opened (headless OpenCV, no display)."""
    import cv2

    try:
        cv2.imshow("fer-keras", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            stop.set()
        return True
    except cv2.error:
        return False


def plot_timelines(summary_tracks: dict, tracks: list[Track], classes, fps: float, folder: Path) -> list[Path]:
    """One emotion-over-time PNG per track (smoothed probabilities against seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for track in tracks:
        if len(track.history) < 2:
            continue
        t = np.array([i for i, _ in track.history]) / fps
        p = np.stack([q for _, q in track.history])
        fig, ax = plt.subplots(figsize=(9, 3.2))
        for k, name in enumerate(classes):
            ax.plot(t, p[:, k], label=name)
        ax.set_xlabel("seconds")
        ax.set_ylabel("probability (smoothed)")
        ax.set_ylim(0, 1)
        ax.set_title(
            f"track #{track.track_id}: {summary_tracks.get(str(track.track_id), {}).get('dominant_emotion', '')}"
        )
        ax.legend(ncol=len(classes), fontsize=7, loc="upper center")
        fig.tight_layout()
        path = folder / f"timeline_track{track.track_id}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def emotion_mix(tracks: list[Track], num_classes: int, fps: float, frames: int) -> np.ndarray:
    """``[seconds, num_classes]``: for each second of the video, the mean of every classified face's
    smoothed probabilities in it (each face in each frame counts once); rows of seconds without a face
    are NaN."""
    seconds = max(1, int(np.ceil(max(frames, 1) / fps)))
    total = np.zeros((seconds, num_classes))
    count = np.zeros(seconds)
    for track in tracks:
        for frame, probabilities in track.history:
            second = min(int(frame / fps), seconds - 1)
            total[second] += probabilities
            count[second] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count[:, None] > 0, total / count[:, None], np.nan)


def timeline_tracks(tracks: list[Track], fps: float, frames: int, most: int = 4) -> list[Track]:
    """The tracks that get a timeline row of their own in the summary: of the ``most`` longest, those
    lasting at least 2 s and 5 % of the video, in order of appearance (none for a video of brief shots)."""
    readable = max(2.0, 0.05 * max(frames, 1) / fps) * fps
    longest = sorted((t for t in tracks if t.history), key=lambda t: -len(t.history))[:most]
    return sorted((t for t in longest if len(t.history) >= readable), key=lambda t: t.history[0][0])


def plot_video_summary(summary: dict, tracks: list[Track], classes, fps: float, path: Path,
                       max_tracks: int = 4) -> Path | None:
    """One figure of the whole video that reads at a glance, whatever its length or number of shots:

    * the emotion mix of all faces over time: each second's mean probabilities of every face
      classified in it, stacked to 100 % (seconds without a face left blank), shot cuts as dashed
      lines;
    * the counts: duration, shots, face tracks, classified faces, and the mix over the whole video;
    * the longest ``max_tracks`` tracks' emotion timelines on the same time axis, where a track lasts
      long enough to read (2 s and 5 % of the video); otherwise (many short shots) the number of faces
      in view over time.

    With more than 30 cuts they are marked as ticks above the mix instead of lines through it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = max(summary.get("frames", 0), 1)
    duration = frames / fps
    cuts = summary.get("cuts", [])
    with_history = [t for t in tracks if t.history]
    longest = timeline_tracks(with_history, fps, frames, max_tracks)
    mix = emotion_mix(with_history, len(classes), fps, frames)
    face_frames = sum(len(t.history) for t in with_history)
    colours = plt.get_cmap("tab10")(np.arange(len(classes)) % 10)
    rows = 1 + max(1, len(longest))
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.6 + 0.8 * max(1, len(longest))), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [2.4] + [1] * (rows - 1)})
    top = axes[0, 0]
    seconds = np.arange(len(mix) + 1)
    shares = np.nan_to_num(mix)
    bottom = np.zeros(len(mix))
    for k, name in enumerate(classes):
        top.bar(seconds[:-1], shares[:, k], width=1.0, bottom=bottom, align="edge", color=colours[k], label=name,
                linewidth=0)
        bottom += shares[:, k]
    many_cuts = len(cuts) > 30
    for cut in cuts:
        if many_cuts:
            top.plot([cut / fps] * 2, [1.0, 1.06], color="0.3", linewidth=0.6, clip_on=False)
        else:
            top.axvline(cut / fps, color="0.3", linestyle="--", linewidth=0.5)
    top.set_ylim(0, 1)
    top.set_yticks([0, 0.5, 1])
    top.set_yticklabels(["0", "50 %", "100 %"], fontsize=7)
    top.set_ylabel("emotion mix", fontsize=8)
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    with_face = ~np.isnan(mix[:, 0])
    whole = np.zeros(len(classes))
    for track in with_history:
        for _, probabilities in track.history:
            whole += probabilities
    whole = whole / max(whole.sum(), 1e-9)
    order = np.argsort(-whole)
    mix_text = ", ".join(f"{classes[k]} {whole[k]:.0%}" for k in order[:3]) if face_frames else "no faces"
    top.set_title(f"{duration:.0f} s, {len(cuts) + 1} shot{'s' if cuts else ''}, {len(with_history)} face track"
                  f"{'s' if len(with_history) != 1 else ''}, {face_frames} classified faces "
                  f"({int(with_face.sum())} of {len(mix)} seconds with a face); over the video: {mix_text}",
                  fontsize=8, loc="left", pad=10 if many_cuts else 4)
    image = None
    for ax, track in zip(axes[1:, 0], longest):
        marks = np.array([i for i, _ in track.history])
        probs = np.stack([p for _, p in track.history]).T  # classes x frames
        full = np.full((len(classes), int(marks[-1] - marks[0]) + 1), np.nan)
        full[:, marks - marks[0]] = probs
        image = ax.imshow(full, aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest",
                          extent=(marks[0] / fps, (marks[-1] + 1) / fps, len(classes) - 0.5, -0.5))
        ax.set_yticks(range(len(classes)))
        ax.set_yticklabels(classes, fontsize=6)
        info = summary.get("tracks", {}).get(str(track.track_id), {})
        ax.set_title(f"track #{track.track_id}: {info.get('dominant_emotion', '')}, {len(track.history)} frames "
                     f"({len(track.history) / fps:.1f} s)", fontsize=7, loc="left", pad=2)
        for cut in cuts:
            ax.axvline(cut / fps, color="0.6", linestyle="--", linewidth=0.5)
    if not longest:
        ax = axes[1, 0]
        if with_history:  # short tracks only: how many faces are in view, second by second
            in_view = np.zeros(len(mix))
            for track in with_history:
                for frame, _ in track.history:
                    in_view[min(int(frame / fps), len(mix) - 1)] += 1 / fps
            ax.bar(seconds[:-1], in_view, width=1.0, align="edge", color="0.5", linewidth=0)
            ax.set_ylabel("faces in view", fontsize=8)
            longest_s = max(len(t.history) for t in with_history) / fps
            ax.set_title(f"faces in view (mean per frame); no track lasts long enough for a timeline of its own "
                         f"(the longest {longest_s:.1f} s)", fontsize=7, loc="left", pad=2)
        else:
            ax.text(0.5, 0.5, "no faces found", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
    for ax in axes[:, 0]:
        ax.set_xlim(0, duration)
    axes[-1, 0].set_xlabel("seconds")
    hidden = len(with_history) - len(longest)
    below = "the faces in view" if not longest else f"the {'longest ' if hidden > 0 else ''}face tracks"
    fig.suptitle(f"{summary.get('input', '')}: the emotions of all faces over time"
                 + (" (cuts: ticks above)" if many_cuts else "") + f", then {below}"
                 + (f" ({hidden} other tracks are in the mix)" if hidden > 0 and longest else ""), fontsize=9)
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=axes[1:, 0].tolist(), fraction=0.015, pad=0.01, label="probability")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
