"""The browser page, as a person sees it: Debian's Chromium (headless) with a fake camera playing FER2013
test faces, driven by Playwright; the shipped models behind the service."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.fakecam import chromium_args, chromium_path, fer2013_test_faces, scene, write_y4m
from tests.conftest import FER2013, requires_fer2013
from tests.service.conftest import encode, running

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (make test)")
pytestmark = [
    requires_fer2013,
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason="no Chromium: `make test` installs Debian's as root "
                                                        "(apt-get install chromium)"),
]
MODELS = ("gimefive-fer2013", "gimefive-ferplus")


@pytest.fixture(scope="module")
def shipped():
    from clients.client import EmotionClient
    from clients.service.analyst import Analyst
    from fer_keras.exporting import serving_base
    from serving.local.embedded import start_embedded_server

    server = start_embedded_server({name: str(serving_base(name)) for name in MODELS})
    clients = {name: EmotionClient(server.address, name, timeout=60) for name in MODELS}
    yield Analyst(clients)
    for client in clients.values():
        client.close()
    server.stop(grace=0.5)


@pytest.fixture(scope="module")
def clear_faces(shipped):
    """A happy and a surprised FER2013 test face that the served six-class model, through the service's own
    analysis, finds in their scenes and labels as such with probability 0.8 or more."""
    chosen = {}
    for label in ("happiness", "surprise"):
        for _, face in fer2013_test_faces(FER2013, label, 40):
            faces = shipped.analyze(scene(face), model=MODELS[0])["faces"]
            if len(faces) == 1 and faces[0]["emotion"] == label and faces[0]["probabilities"][label] >= 0.8:
                chosen[label] = face
                break
    assert set(chosen) == {"happiness", "surprise"}, "no clear face among the first 40 of a class"
    return chosen


@pytest.fixture(scope="module")
def page_url(shipped):
    from clients.service.app import create_app

    with running(create_app(shipped)) as url:
        yield url


def _browser(p, y4m: Path | None = None):
    return p.chromium.launch(executable_path=chromium_path(), args=chromium_args(y4m), headless=True)


COLOURED = """([x0, y0, x1, y1]) => {
  const c = document.getElementById("view");
  const d = c.getContext("2d").getImageData(x0, y0, x1 - x0, y1 - y0).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 60) n += 1;
  }
  return n / (d.length / 4);
}"""


def _inner(box, share=0.25):
    x, y, w, h = box
    return [int(x + share * w), int(y + share * h), int(x + (1 - share) * w), int(y + (1 - share) * h)]


def test_the_camera_page_shows_boxes_labels_overlays_and_each_faces_mix(page_url, clear_faces, tmp_path):
    frames = [scene(clear_faces[label], seed=k) for k, label in enumerate(("happiness", "surprise")) for _ in range(45)]
    y4m = write_y4m(tmp_path / "camera.y4m", frames)
    with playwright.sync_playwright() as p:
        browser = _browser(p, y4m)
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        page.goto(page_url)
        page.wait_for_function("window.fer.models.length === 2")
        assert page.eval_on_selector("#model", "s => [...s.options].map(o => o.value)") == list(MODELS)
        page.click("#camera")
        # both faces seen, each for several frames (the file loops: 1.5 s a face)
        page.wait_for_function("[...window.fer.mixes.values()].filter(m => m.frames >= 3).length >= 2", timeout=120_000)
        mixes = page.evaluate("[...window.fer.mixes].map(([k, m]) => [k, m.label, m.frames])")
        labels = {label for _, label, frames in mixes if frames >= 3}
        assert labels >= {"happiness", "surprise"}, mixes
        assert all(key.startswith("#") for key, _, _ in mixes)  # tracked faces
        page.wait_for_function("window.fer.overlays > 0 && window.fer.last.faces.length === 1")
        last = page.evaluate("window.fer.last")
        face = last["faces"][0]
        assert last["stream"].startswith("page-") and face["explanation"]["method"] == "gradact-fused"
        # what is drawn: colour (the explanation) inside the face, grey scene outside, the box's own colour
        inside = page.evaluate(COLOURED, _inner(face["box"]))
        outside = page.evaluate(COLOURED, [0, 0, 60, 60])
        assert inside > 0.3 and outside == 0, (inside, outside)
        x, y, w, h = face["box"]
        edge = page.evaluate(f"Array.from(document.getElementById('view').getContext('2d')"
                             f".getImageData({x + w // 2}, {y + h - 1}, 1, 1).data)")
        assert edge[0] < 60 and edge[1] > 150 and edge[2] > 200, edge  # #00c8ff
        assert page.inner_text("#faces").count("frame") >= 1 and float(page.get_attribute("#fps", "data-fps")) > 0
        page.click("#stop")
        page.wait_for_function("document.getElementById('camera').disabled === false")
        shot = Image.open(io.BytesIO(page.screenshot()))
        assert np.asarray(shot).std() > 10
        browser.close()


def test_a_dropped_photo_and_the_other_model(page_url, clear_faces, tmp_path):
    photo = tmp_path / "happy.jpg"
    photo.write_bytes(encode(scene(clear_faces["happiness"]), quality=90))
    with playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(page_url)
        page.wait_for_function("window.fer.models.length === 2")
        # dropped on the image area, as a person drags a file from their desktop
        data = list(photo.read_bytes())
        drop = page.evaluate_handle("""(bytes) => {
            const t = new DataTransfer();
            t.items.add(new File([new Uint8Array(bytes)], "happy.jpg", { type: "image/jpeg" }));
            return t; }""", data)
        page.dispatch_event("#stage", "drop", {"dataTransfer": drop})
        page.wait_for_selector("#faces li[data-label]")
        assert page.get_attribute("#faces li", "data-face") == "face 1"  # a photo: no track
        assert page.get_attribute("#faces li", "data-label") == "happiness"
        assert len(page.evaluate("window.fer.last.classes")) == 6
        page.select_option("#model", MODELS[1])
        page.set_input_files("#photo", [])
        page.set_input_files("#photo", str(photo))
        page.wait_for_function("window.fer.last.model === 'gimefive-ferplus'")
        assert page.evaluate("window.fer.last.classes").count("neutral") == 1
        assert page.get_attribute("#faces li", "data-label") in ("happiness", "neutral")
        page.set_input_files("#photo", [])
        page.set_input_files("#photo", {"name": "note.jpg", "mimeType": "image/jpeg", "buffer": b"not a photo"})
        page.wait_for_function("document.getElementById('status').textContent.includes('not an image')")
        browser.close()
