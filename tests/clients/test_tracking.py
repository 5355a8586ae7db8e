import numpy as np
import pytest

from clients.tracking import IoUTracker, Track, iou
from fer_keras.detection import Face


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 50 / 150) < 1e-9


def test_identities_follow_moving_faces():
    tracker = IoUTracker(iou_threshold=0.3, max_missed=1)
    ids = []
    for step in range(10):
        faces = [Face((10 + 3 * step, 10, 50, 50)), Face((200 - 3 * step, 100, 60, 60))]
        ids.append(sorted((t.track_id, t.face.box[0]) for t in tracker.update(faces)))
    assert all(len(frame) == 2 for frame in ids)
    assert {i for frame in ids for i, _ in frame} == {1, 2}


def test_new_faces_get_new_ids_and_lost_faces_end():
    tracker = IoUTracker(max_missed=1)
    tracker.update([Face((0, 0, 40, 40))])
    tracker.update([Face((0, 0, 40, 40)), Face((300, 300, 40, 40))])
    assert sorted(t.track_id for t in tracker.live()) == [1, 2]
    tracker.update([Face((300, 300, 40, 40))])     # face 1 missed once: kept, but not drawn or classified
    assert [t.track_id for t in tracker.live()] == [2] and tracker.tracks[0].missed == 1
    tracker.update([Face((300, 300, 40, 40))])     # missed twice: ended
    assert [t.track_id for t in tracker.tracks] == [2]
    tracker.update([Face((0, 0, 40, 40))])
    assert [t.track_id for t in tracker.live()] == [3]  # a new face; 2 was missed once and is not shown
    assert sorted(tracker.all_tracks) == [1, 2, 3]


def test_smoothing_is_an_exponential_moving_average():
    track = Track(1, Face((0, 0, 1, 1)))
    np.testing.assert_allclose(track.smooth(np.array([1.0, 0.0]), 0.5), [1.0, 0.0])
    np.testing.assert_allclose(track.smooth(np.array([0.0, 1.0]), 0.5), [0.5, 0.5])
    np.testing.assert_allclose(track.smooth(np.array([0.0, 1.0]), 1.0), [0.0, 1.0])


def test_boxes_move_on_at_the_measured_velocity():
    tracker = IoUTracker()
    tracker.update([Face((100, 50, 40, 40), landmarks={"nose": (120, 70)})], frame=0)
    (track,) = tracker.update([Face((110, 50, 40, 40), landmarks={"nose": (130, 70)})], frame=5)
    assert track.velocity == (2.0, 0.0)
    moved = track.face_at(8)
    assert moved.box == (116, 50, 40, 40) and moved.landmarks["nose"] == (136, 70)
    # A fast face still matches its predicted box at the next detection.
    (again,) = tracker.update([Face((120, 50, 40, 40))], frame=10)
    assert again.track_id == track.track_id


def test_track_boxes_smooth_detector_jitter_but_follow_steady_motion():
    tracker = IoUTracker(box_smoothing=0.5)
    for frame, x in ((0, 100), (5, 110), (10, 120)):  # steady 2 px per frame
        (track,) = tracker.update([Face((x, 50, 40, 40))], frame=frame)
    assert track.face.box == (120, 50, 40, 40) and track.velocity == (2.0, 0.0)
    # A detection 10 px too wide and 6 px off course is met halfway: predicted centre
    # (150, 70), detected (149, 76) -> (149.5, 73); width (40 + 50) / 2.
    (track,) = tracker.update([Face((124, 56, 50, 40))], frame=15)
    assert track.face.box == (127, 53, 45, 40)
    raw = IoUTracker(box_smoothing=1.0)
    for frame, box in ((0, (100, 50, 40, 40)), (5, (110, 50, 40, 40)), (10, (124, 56, 50, 40))):
        (track,) = raw.update([Face(box)], frame=frame)
    assert track.face.box == (124, 56, 50, 40)
    with pytest.raises(ValueError, match="box_smoothing"):
        IoUTracker(box_smoothing=0)


def test_a_low_scored_detection_is_shown_only_once_confirmed():
    tracker = IoUTracker(confirm_score=0.9)
    assert tracker.update([Face((0, 0, 40, 40), 0.99), Face((200, 0, 40, 40), 0.75)], frame=0)[0].track_id == 1
    assert len(tracker.live()) == 1
    # Seen again: confirmed, with the next id.
    live = tracker.update([Face((0, 0, 40, 40), 0.99), Face((202, 0, 40, 40), 0.8)], frame=5)
    assert sorted(t.track_id for t in live) == [1, 2]
    # A one-off low-scored detection is dropped without using up an id.
    tracker.update([Face((0, 0, 40, 40)), Face((202, 0, 40, 40)), Face((400, 300, 30, 30), 0.72)], frame=10)
    tracker.update([Face((0, 0, 40, 40)), Face((202, 0, 40, 40))], frame=15)
    assert sorted(tracker.all_tracks) == [1, 2] and len(tracker.tracks) == 2


def test_a_face_missed_once_gets_its_own_track_back():
    tracker = IoUTracker(max_missed=2)
    tracker.update([Face((0, 0, 40, 40))], frame=0)
    assert tracker.update([], frame=5) == []
    (track,) = tracker.update([Face((2, 0, 40, 40))], frame=10)
    assert track.track_id == 1 and track.missed == 0


def test_a_cut_ends_every_track_and_a_new_face_starts_clean():
    tracker = IoUTracker()
    (old,) = tracker.update([Face((100, 100, 80, 80))], frame=0)
    old.smooth(np.array([1.0, 0.0]), 0.5)
    old.heatmap = np.ones((4, 4))
    tracker.reset()
    assert tracker.live() == []
    (new,) = tracker.update([Face((104, 100, 80, 80))], frame=1)  # where the old face was
    assert new.track_id == 2 and new is not old
    assert new.probabilities is None and new.heatmap is None and new.history == []
    assert sorted(tracker.all_tracks) == [1, 2]


def test_two_faces_crossing_keep_their_tracks_by_appearance():
    from clients.tracking import appearance

    rng = np.random.default_rng(0)
    import cv2

    a, b = (cv2.resize(rng.integers(0, 255, (8, 8)).astype(np.uint8), (64, 64)) for _ in range(2))
    tracker = IoUTracker(iou_threshold=0.2, max_missed=3)
    # Face A moves right, face B left, along the same row; they overlap in the middle detection rounds,
    # where only the face in front (B) is detected.
    ids = {}
    for step, frame in enumerate(range(0, 50, 5)):
        xa, xb = 40 + 20 * step, 240 - 20 * step
        faces, looks = [], []
        if abs(xa - xb) >= 50:
            faces.append(Face((xa, 100, 60, 60)))
            looks.append(appearance(a))
        faces.append(Face((xb, 100, 60, 60)))
        looks.append(appearance(b))
        for track in tracker.update(faces, frame, looks):
            ids.setdefault("A" if track.face.box[0] == xa and abs(xa - xb) >= 50 else "B", set()).add(track.track_id)
    assert ids["B"] == {2}  # B was never taken for A, though it sat where A's track predicted A to be
    assert 1 in ids["A"] and 2 not in ids["A"]
    # Face A leaves and a different face B turns up where A was (a cut nobody detected): without
    # appearances B would continue A's track, with them B starts its own.
    for use in (False, True):
        tracker = IoUTracker()
        tracker.update([Face((100, 100, 60, 60))], 0, [appearance(a)] if use else None)
        (track,) = tracker.update([Face((106, 100, 60, 60))], 5, [appearance(b)] if use else None)
        assert track.track_id == (2 if use else 1)
