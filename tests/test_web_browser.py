"""The explorer end to end: `cnnlab serve` in a subprocess, driven by Debian's headless Chromium via Playwright.

`make test` installs Chromium on a fresh Debian machine. Set CNNLAB_EXPLORER_SCREENSHOTS=docs to refresh the
screenshots of docs/explorer.md from these tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.viz.handcrafted import playground_entries
from test_web_api import trained_run  # noqa: F401  (the session's small trained run)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REBOUND = "evil.example"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"]  # a DNS-rebinding attacker's name (below)
# The convolved image's value range, as the page shows it, equals [low, high] (the server rounds to 5 decimals).
RANGE_IS = """([low, high]) => {
    const shown = (document.querySelector('#conv-output').dataset.range || '').split(',').map(Number);
    return shown.length === 2 && Math.abs(shown[0] - low) < 1e-4 && Math.abs(shown[1] - high) < 1e-4; }"""
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (`make test` installs it)")


def serve(*args):
    """`cnnlab serve ARGS... --port 0`: the command picks a free port on 127.0.0.1 and prints its URL first; yields
    the URL while the server runs."""
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", *map(str, args), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        match = re.match(r"cnnlab explorer: (http://127\.0\.0\.1:\d+)/", line)
        if not match:
            raise RuntimeError(f"cnnlab serve did not start: {line}{process.stdout.read()}")
        yield match[1]
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def server(trained_run):  # noqa: F811
    yield from serve(trained_run.path)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, server, width: int, touch: bool = False):
    """A page at `server`; any request to another host is refused and recorded (the explorer must work offline)."""
    page = browser.new_page(viewport={"width": width, "height": 900}, has_touch=touch)
    page.foreign = []
    page.errors = []
    page.on("pageerror", lambda err: page.errors.append(str(err)))

    def only_local(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            page.foreign.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(server)
    page.wait_for_selector("body[data-ready='1']")
    return page


def wait_until(page, condition: str, arg=None, seconds: float = 15):
    """Wait for a JS condition; on timeout, fail with what the page shows instead of a bare timeout."""
    from playwright.sync_api import TimeoutError

    try:
        page.wait_for_function(condition, arg=arg, timeout=seconds * 1000)
    except TimeoutError:
        shown = page.evaluate("[...document.querySelectorAll('#prediction, #seen-note, #status, #conv-range')]"
                              ".map(e => e.id + ': ' + e.textContent).join(' | ')")
        pytest.fail(f"page never met {condition!r}; it shows {shown}", pytrace=False)


def probabilities(page) -> list[float]:
    return [float(p) for p in page.eval_on_selector_all("#probs li", "items => items.map(i => i.dataset.p)")]


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where a test saves its screenshot: CNNLAB_EXPLORER_SCREENSHOTS=docs refreshes the documentation's."""
    return Path(os.environ.get("CNNLAB_EXPLORER_SCREENSHOTS") or tmp_path) / name


def shows_view(page, kind: str):
    """Wait until the formula view of `kind` is open and its numbers have arrived."""
    wait_until(page, f"document.querySelector('#explain').dataset.kind === '{kind}' && "
                     "document.body.dataset.pending === '0'")


def shown_result(page) -> tuple[float, float]:
    """(the formula's result, the model's value), as the open formula view shows them."""
    line = page.locator("#formula-result")
    return float(line.get_attribute("data-result")), float(line.get_attribute("data-actual"))


def test_a_page_on_a_rebound_name_reads_nothing(browser, server, trained_run):  # noqa: F811
    """DNS rebinding: the browser resolves evil.example to 127.0.0.1, so a page of that name is same-origin with the
    explorer and its script may read any answer; the explorer answers that name with 400 only."""
    page = browser.new_page()
    rebound = f"http://{REBOUND}:{server.rsplit(':', 1)[1]}"
    answer = page.goto(rebound + "/")
    assert answer.status == 400 and "not a name this explorer answers to" in answer.text()
    read = page.evaluate("""async () => Promise.all(['/api/sources', '/api/examples/mnist', '/app.js'].map(
        async (path) => { const r = await fetch(path); return [r.status, await r.text()]; }))""")
    assert [status for status, _ in read] == [400, 400, 400], read
    assert not any(trained_run.name in text or "examples" in text or "function" in text for _, text in read), read
    page.goto(server + "/api/sources")  # the same browser, by the name the server was started for
    assert f"run:{trained_run.name}" in page.content()
    page.close()


def test_explorer_end_to_end(browser, server, tmp_path):
    page = open_page(browser, server, 1280)
    mnist = load_dataset("mnist", "test", download=False)

    # A test image with a known label: the second test image, a 2.
    assert mnist.labels[1] == 2
    page.click(".examples button[data-index='1']")
    wait_until(page, "document.querySelector('#seen-note').textContent.includes('#1')")
    wait_until(page, "document.querySelector('#prediction').textContent === '2'")
    assert sum(probabilities(page)) == pytest.approx(1, abs=1e-4)

    # Filter playground on that image: the Laplacian, then a hand-edited kernel, against NumPy.
    page.select_option("#filter-pick", "edge-detection-2")
    kernel = np.asarray(next(f["kernel"] for f in playground_entries() if f["name"] == "edge-detection-2"))
    image = np.pad(mnist.images[1] / 255, 1)
    expected = np.array([[(image[r:r + 3, c:c + 3] * kernel).sum() for c in range(28)] for r in range(28)])
    wait_until(page, RANGE_IS, [expected.min(), expected.max()])
    page.fill("#kernel input >> nth=4", "0")  # the Laplacian without its centre: a sum of 4 neighbours
    assert page.input_value("#filter-pick") == "custom"
    kernel[1, 1] = 0
    expected = np.array([[(image[r:r + 3, c:c + 3] * kernel).sum() for c in range(28)] for r in range(28)])
    wait_until(page, RANGE_IS, [expected.min(), expected.max()])

    # Draw a stroke: a vertical line is a 1 to any MNIST model.
    page.locator("#draw").scroll_into_view_if_needed()  # mouse coordinates are the viewport's
    box = page.locator("#draw").bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 50)
    page.mouse.down()
    for y in range(50, 235, 15):
        page.mouse.move(box["x"] + 140 + (y - 50) // 30, box["y"] + y)
    page.mouse.up()
    wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('drawing')")
    wait_until(page, "document.querySelector('#prediction').textContent === '1'")
    shown = probabilities(page)
    assert len(shown) == 10 and sum(shown) == pytest.approx(1, abs=1e-4)

    # Every layer's feature maps are there, drawn (not blank), and a conv map explains its pixel.
    wait_until(page, "document.body.dataset.pending === '0'")
    counts = {name: page.locator(f".layer[data-layer='{name}'] canvas.map").count()
              for name in ("input", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2")}
    assert counts == {"input": 1, "conv1": 16, "relu1": 16, "pool1": 16, "conv2": 32, "relu2": 32, "pool2": 32}
    spread = page.eval_on_selector(".layer[data-layer='conv1'] canvas.map", """canvas => {
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        return Math.max(...data) - Math.min(...data); }""")
    assert spread > 100
    assert page.locator(".layer[data-layer='softmax'] .strip span").count() == 10
    page.focus(".layer[data-layer='conv2'] canvas.map >> nth=5")  # by keyboard: the maps are focusable buttons
    page.keyboard.press("Enter")
    shows_view(page, "conv")
    result, actual = shown_result(page)
    assert result == pytest.approx(actual, abs=1e-4)
    assert page.locator("#learned canvas").count() == 16

    # A pooled pixel shows its window; the value under the enlarged map is the model's own, with no "±".
    page.click(".layer[data-layer='pool1'] canvas.map >> nth=6")
    shows_view(page, "pool")
    size = page.locator("#detail-map").bounding_box()["width"] / 12
    page.click("#detail-map", position={"x": 3.5 * size, "y": 4.5 * size})
    wait_until(page, "document.querySelector('#explain h3').textContent.includes('row 4, column 3')")
    wait_until(page, "document.body.dataset.pending === '0'")
    assert "±" not in page.inner_text("#detail-value")
    assert page.get_attribute("#field-map", "data-box") == "8,14,6,12"  # pool1 (4, 3): 6x6 pixels, 2 apart: rows 8-13
    page.focus("#detail-map")  # the arrow keys move the pixel
    page.keyboard.press("ArrowDown")
    wait_until(page, "document.querySelector('#explain h3').textContent.includes('row 5, column 3')")
    wait_until(page, "document.body.dataset.pending === '0'")
    assert page.get_attribute("#field-map", "data-box") == "10,16,6,12"

    # The map's brightest pixel: its window's largest value is the pixel, and the model's value.
    brightest = page.eval_on_selector(".layer[data-layer='pool1'] canvas.map >> nth=6", """canvas => {
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let best = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] > data[best]) best = i;
        return [Math.floor(best / 4 / canvas.width), (best / 4) % canvas.width]; }""")
    page.click("#detail-map", position={"x": (brightest[1] + 0.5) * size, "y": (brightest[0] + 0.5) * size})
    wait_until(page, "text => document.querySelector('#explain h3').textContent.includes(text)",
               f"row {brightest[0]}, column {brightest[1]})")
    wait_until(page, "document.body.dataset.pending === '0'")
    window = [float(v) for v in page.eval_on_selector_all("#explain .grid span:not(.pad)", "s => s.map(e => e.title)")]
    result, actual = shown_result(page)
    assert len(window) == 4 and max(window) == pytest.approx(actual, abs=1e-6) and result == actual > 0
    assert float(page.get_attribute("#detail-value", "data-actual")) == actual

    shot = screenshot_path(tmp_path, "explorer.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    assert page.foreign == [] and page.errors == []
    page.close()


def test_explorer_on_a_phone_touch_and_upload(browser, server, tmp_path):
    page = open_page(browser, server, 390, touch=True)
    wait_until(page, "document.querySelector('#prediction').textContent !== '–'")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone

    # A finger drags a vertical stroke (real touch events, through Chromium's input pipeline).
    page.locator("#draw").scroll_into_view_if_needed()
    box = page.locator("#draw").bounding_box()
    cdp = page.context.new_cdp_session(page)
    x = box["x"] + box["width"] / 2
    ys = [box["y"] + box["height"] * f for f in (0.15, 0.3, 0.45, 0.6, 0.75, 0.85)]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": ys[0]}]})
    for y in ys[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('drawing')")
    wait_until(page, "document.querySelector('#prediction').textContent === '1'")

    # Uploads: a photo-like digit is classified; a blank page is refused with the server's one-line reason.
    mnist = load_dataset("mnist", "test", download=False)
    assert mnist.labels[3] == 0
    photo, blank = tmp_path / "zero.png", tmp_path / "blank.png"
    Image.fromarray(255 - np.kron(mnist.images[3], np.ones((5, 5), np.uint8))).save(photo)
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(blank)
    page.set_input_files("#upload", str(photo))
    wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('zero.png')")
    wait_until(page, "document.querySelector('#prediction').textContent === '0'")
    page.set_input_files("#upload", str(blank))
    wait_until(page, "document.querySelector('#status').textContent === 'blank.png: no digit found (the image is blank)'")
    assert page.inner_text("#prediction") == "0"  # the last good answer stays

    # The formula views and the playground fit the phone too (wide tables scroll inside their panel).
    for layer, selector, kind in (("conv2", "canvas.map >> nth=2", "conv"), ("fc1", ".cell >> nth=7", "linear"),
                                  ("softmax", ".cell >> nth=0", "softmax")):
        page.locator(f".layer[data-layer='{layer}'] {selector}").click()
        shows_view(page, kind)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, layer
    page.select_option("#pg-kernel", "7")
    page.fill("#pg-size", "12")
    wait_until(page, "document.body.dataset.pending === '0'")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator(".layer[data-layer='pool1'] canvas.map >> nth=1").click()
    shows_view(page, "pool")
    page.screenshot(path=str(screenshot_path(tmp_path, "explorer-phone.png")), full_page=True)
    assert page.foreign == [] and page.errors == []
    page.close()


def seen_digit(page) -> np.ndarray:
    """The 28x28 digit the page sends to the model, read back from its 'what the model sees' canvas."""
    data = page.eval_on_selector("#seen", """canvas => Array.from(
        canvas.getContext('2d').getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))""")
    return np.asarray(data, np.uint8).reshape(28, 28)


def open_formula(page, layer: str, selector: str) -> tuple[list[int], float, float]:
    """Click a map or value of `layer`'s row; (the index explained, the formula's result, the model's value)."""
    page.click(f".layer[data-layer='{layer}'] {selector}")
    wait_until(page, f"document.querySelector('#explain').dataset.layer === '{layer}' && "
                     "document.body.dataset.pending === '0'")
    index = [int(i) for i in page.get_attribute("#explain", "data-index").split(",")]
    return index, *shown_result(page)


def choose_source(page, source: str):
    page.select_option("#source", source)
    wait_until(page, f"document.querySelector('#source-note').textContent !== '' && "
                     "document.body.dataset.pending === '0'")
    page.wait_for_selector(f".layer[data-layer='softmax']")


def test_a_drawn_digit_flows_through_every_layer_view(browser, server, trained_run):  # noqa: F811
    """Every row of the trained run and of resnet20 (batch norm, residual additions) and alexnet-2012 (local
    response normalization): the page's formula gives the model's value, and that value is what the model computed
    for the page's digit (recorded here by the test's own hooks)."""
    from test_web_formulas import recorded
    from cnnlab.web.sources import Sources

    page = open_page(browser, server, 1280)
    page.locator("#draw").scroll_into_view_if_needed()
    box = page.locator("#draw").bounding_box()
    page.mouse.move(box["x"] + 80, box["y"] + 70)
    page.mouse.down()
    for step in range(12):  # a 7: across, then down to the left
        down = max(0, step - 6)
        page.mouse.move(box["x"] + 80 + min(step, 6) * 20 - down * 10, box["y"] + 70 + down * 28)
    page.mouse.up()
    wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('drawing')")
    wait_until(page, "document.body.dataset.pending === '0'")
    digit = seen_digit(page)
    assert digit.max() == 255
    sources = Sources([trained_run.path])
    kinds = set()
    for source, every_row in (("run:tiny", True), ("model:resnet20", False), ("model:alexnet-2012", False)):
        choose_source(page, source)
        loaded = sources.get(source)
        record, logits = recorded(loaded.model, digit, loaded.info)
        rows = page.eval_on_selector_all(".layer", "rows => rows.map(r => [r.dataset.layer, "
                                                   "r.querySelector('.meta').textContent])")
        seen_types = set()
        for layer, meta in rows:
            kind = meta.split(" · ")[0]
            if layer == "input" or (not every_row and kind in seen_types):
                continue
            seen_types.add(kind)
            selector = "canvas.map >> nth=0" if page.locator(f".layer[data-layer='{layer}'] canvas.map").count() \
                else ".cell >> nth=0"
            index, result, actual = open_formula(page, layer, selector)
            kinds.add(page.get_attribute("#explain", "data-kind"))
            assert result == pytest.approx(actual, abs=1e-4), (source, layer)
            if layer == "softmax":
                expected = logits.softmax(0)[index[0]]
            elif layer.endswith(".add"):
                block = layer.removesuffix(".add")
                then = max(n for n in record if n.startswith(block + ".act"))
                expected = record[then][0][tuple(index)]
            else:
                expected = record[layer][1][tuple(index)]
            assert actual == pytest.approx(float(expected), abs=1e-4), (source, layer)
    assert kinds == {"conv", "activation", "pool", "flatten", "linear", "softmax", "batchnorm", "residual", "lrn"}
    assert page.errors == [] and page.foreign == []
    page.close()


# (input size, kernel, stride, padding, dilation): exact, rounded down, dilated, and no window at all.
PLAYGROUND_SETTINGS = [(7, 3, 1, 1, 1), (7, 3, 2, 0, 1), (8, 3, 2, 0, 1), (12, 5, 3, 2, 1), (9, 3, 2, 1, 2),
                       (5, 7, 1, 0, 1), (5, 7, 1, 1, 1), (10, 4, 4, 3, 1), (3, 2, 1, 0, 3), (11, 6, 2, 2, 2)]


def test_playground_output_size_equals_pytorch_and_explains_invalid_settings(browser, server, tmp_path):
    import torch

    page = open_page(browser, server, 1280)
    for n, k, s, p, d in PLAYGROUND_SETTINGS:
        page.select_option("#pg-kernel", str(k))
        for name, value in (("stride", s), ("padding", p), ("dilation", d), ("size", n)):
            page.fill(f"#pg-{name}", str(value))
        wait_until(page, "document.body.dataset.pending === '0'")
        try:
            expected = torch.nn.functional.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s,
                                                  padding=p, dilation=d).shape[-1]
        except RuntimeError:
            expected = 0
        shown = page.locator("#pg-output")
        assert int(shown.get_attribute("data-output")) == expected, (n, k, s, p, d)
        why = page.inner_text("#pg-why")
        span = n + 2 * p - d * (k - 1) - 1
        if expected == 0:
            assert why.startswith("no window fits") and shown.inner_text() == "no output"
        elif span % s:
            assert f"{span}/{s} is not an integer" in why and f"the last {span % s} pixel(s)" in why
        else:
            assert why.startswith("The division is exact")
        # the same settings on the 28x28 digit: the server's output has PyTorch's shape
        expected_28 = (28 + 2 * p - d * (k - 1) - 1) // s + 1
        wait_until(page, f"document.querySelector('#conv-output').dataset.shape === '{expected_28},{expected_28}'")

    # An edited 5x5 kernel with stride 2, padding 2 and dilation 1 on the page's input, against NumPy.
    page.select_option("#pg-kernel", "5")
    for name, value in (("stride", 2), ("padding", 2), ("dilation", 1)):
        page.fill(f"#pg-{name}", str(value))
    page.fill("#kernel input >> nth=0", "2")
    page.fill("#kernel input >> nth=24", "-1")
    kernel = np.zeros((5, 5))
    kernel[0, 0], kernel[2, 2], kernel[4, 4] = 2, 1, -1
    image = np.pad(seen_digit(page) / 255, 2)
    expected = np.array([[(image[r * 2:r * 2 + 5, c * 2:c * 2 + 5] * kernel).sum() for c in range(14)]
                         for r in range(14)])
    wait_until(page, RANGE_IS, [expected.min(), expected.max()])
    assert page.get_attribute("#conv-output", "data-shape") == "14,14"

    # A photo instead of the digit: 300x200, scaled to 128 pixels a side by the browser, a 3x3 kernel with stride
    # 2 and no padding against NumPy on the image the page shows (and sends).
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(photo)
    page.select_option("#filter-pick", "edge-detection-2")
    for name, value in (("stride", 2), ("padding", 0), ("dilation", 1)):
        page.fill(f"#pg-{name}", str(value))
    page.set_input_files("#pg-photo", str(photo))
    wait_until(page, "document.querySelector('#conv-output').dataset.shape === '42,63'")  # (85 - 3) // 2 + 1, ...
    shown = page.eval_on_selector("#conv-input", """canvas => Array.from(
        canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data.filter((_, i) => i % 4 === 0))""")
    image = np.asarray(shown, float).reshape(85, 128) / 255
    kernel = np.asarray(next(f["kernel"] for f in playground_entries() if f["name"] == "edge-detection-2"))
    expected = np.array([[(image[2 * r:2 * r + 3, 2 * c:2 * c + 3] * kernel).sum() for c in range(63)]
                         for r in range(42)])
    wait_until(page, RANGE_IS, [expected.min(), expected.max()])
    assert "rows: 85 → (85 + 2·0 − 1·(3−1) − 1) / 2 + 1 = 42" in page.inner_text("#conv-size")
    page.click("#pg-digit")
    wait_until(page, "document.querySelector('#conv-output').dataset.shape === '13,13'")

    assert page.errors == [] and page.foreign == []
    page.close()


def test_occlusion_and_top_activations_views(browser, server, trained_run, tmp_path):  # noqa: F811
    """Occlusion of the page's digit: the probability under a clicked cell is the model's with the square there.
    Top activations of a conv map: a progress bar, then 9 test images, each the one the API found."""
    import torch

    from cnnlab.data import dataset_info
    from cnnlab.viz.activations import normalize_input

    page = open_page(browser, server, 1280)
    page.fill("#occ-size", "10")
    page.fill("#occ-stride", "6")
    page.click("#occ-run")
    wait_until(page, "document.querySelector('#occ-map').dataset.done === '1'")
    page.locator("#occ-map").scroll_into_view_if_needed()
    box = page.locator("#occ-map").bounding_box()
    starts = [0, 6, 12, 18]  # 28 - 10 = 18 is the last start
    page.mouse.click(box["x"] + box["width"] * 1.5 / 4, box["y"] + box["height"] * 2.5 / 4)  # row 2, column 1
    shown = float(page.get_attribute("#occ-at", "data-p"))
    assert "rows 12–21, columns 6–15" in page.inner_text("#occ-at")
    model = trained_run.build_model()
    info = dataset_info("mnist")
    x = normalize_input(seen_digit(page), info.mean, info.std)
    with torch.no_grad():
        target = int(model(x).argmax())
        x[..., starts[2]:starts[2] + 10, starts[1]:starts[1] + 10] = 0
        expected = float(model(x).softmax(1)[0, target])
    assert shown == pytest.approx(expected, abs=1e-5)
    assert page.locator("#occ-top span").count() == 16
    page.focus("#occ-map")  # by keyboard: the arrow keys move the square
    page.keyboard.press("ArrowRight")
    assert "rows 12–21, columns 12–21" in page.inner_text("#occ-at")

    page.click(".layer[data-layer='conv2'] canvas.map >> nth=3")
    wait_until(page, "!document.querySelector('#top-button').hidden")
    page.click("#top-button")
    page.wait_for_selector("#top-activations progress")
    # the search of 10,000 test images: seconds alone, several times that while the whole suite runs on 2 cores
    wait_until(page, "document.querySelector('#top-activations').dataset.state === 'done'", seconds=90)
    assert page.locator("#top-activations figure").count() == 9
    captions = page.eval_on_selector_all("#top-activations figcaption", "f => f.map(e => e.textContent)")
    assert all(c.startswith("test #") for c in captions)
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-top-activations.png")))
    page.locator("#occlusion-panel").screenshot(path=str(screenshot_path(tmp_path, "explorer-occlusion.png")))
    assert page.errors == [] and page.foreign == []
    page.close()
