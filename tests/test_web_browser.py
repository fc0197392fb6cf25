"""The explorer end to end: `cnnlab serve` in a subprocess, driven by Debian's headless Chromium via Playwright.

`make test` installs Chromium on a fresh Debian machine, and axe-core in build/. Set
CNNLAB_EXPLORER_SCREENSHOTS=docs to refresh the screenshots of docs/explorer.md from these tests.
"""

from __future__ import annotations

import io
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.viz.handcrafted import playground_entries
from conftest import REPO
from test_web_api import trained_run  # noqa: F401  (the session's small trained run)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REBOUND = "evil.example"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"]  # a DNS-rebinding attacker's name (below)
AXE = REPO / "build" / "axe-core" / "axe.min.js"  # `make test` fetches it (the Makefile's AXE_VERSION)
# The convolved image's value range, as the page shows it, equals [low, high] (the server rounds to 5 decimals).
RANGE_IS = """([low, high]) => {
    const shown = (document.querySelector('#conv-output').dataset.range || '').split(',').map(Number);
    return shown.length === 2 && Math.abs(shown[0] - low) < 1e-4 && Math.abs(shown[1] - high) < 1e-4; }"""
# One xdist worker runs this file, so that its browser and server start once, not once per worker.
pytestmark = [pytest.mark.xdist_group("browser"),
              pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (`make test` installs it)"),
              pytest.mark.slow]  # a browser: started first (conftest.py)


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
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # a large model's answer still being computed: the test is over
            process.kill()
            process.wait()


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


def open_page(browser, server, width: int, touch: bool = False, height: int = 900, reduced_motion: bool = False):
    """A page at `server`; any request to another host is refused and recorded (the explorer must work offline).
    `reduced_motion`: as a user who asks the system for less motion (the page scrolls to a formula at once, and
    the playground waits for Play). The tests that open many formulas ask for it: a click on the next row waited
    for the smooth scroll to the last formula to end, about a second a click. The explorer's end-to-end flow, the
    playground, the keyboard and accessibility checks and the latency test keep the motion."""
    page = browser.new_page(viewport={"width": width, "height": height}, has_touch=touch,
                            reduced_motion="reduce" if reduced_motion else "no-preference")
    page.foreign = []
    page.errors = []
    page.answers = []  # the API's answers, "status path": what a failed wait prints
    page.on("pageerror", lambda err: page.errors.append(f"{err} {err.stack}"))
    page.on("response", lambda r: "/api/" in r.url and page.answers.append(f"{r.status} {r.url.split('/api/')[1]}"))
    page.on("requestfailed", lambda r: "/api/" in r.url and page.answers.append(f"failed {r.url.split('/api/')[1]}"))

    def only_local(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            page.foreign.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(server)
    wait_for(page, "body[data-ready='1']")
    return page


def shown(page) -> str:
    """What the page says of its state: for a wait that timed out, instead of a bare timeout."""
    state = page.evaluate("[...document.querySelectorAll('#prediction, #seen-note, #status, #conv-range, "
                          "#source-note')].map(e => e.id + ': ' + e.textContent).join(' | ') + ' | body: ' + "
                          "JSON.stringify(document.body.dataset)")
    return f"{state}; page errors: {getattr(page, 'errors', [])}; answers: {getattr(page, 'answers', [])[-6:]}"


def wait_until(page, condition: str, arg=None, seconds: float = 15):
    """Wait for a JS condition; on timeout, fail with what the page shows instead of a bare timeout."""
    from playwright.sync_api import TimeoutError

    try:
        page.wait_for_function(condition, arg=arg, timeout=seconds * 1000)
    except TimeoutError:
        pytest.fail(f"page never met {condition!r}; it shows {shown(page)}", pytrace=False)


def wait_for(page, selector: str, seconds: float = 30):
    """Wait for an element; on timeout, fail with what the page shows."""
    from playwright.sync_api import TimeoutError

    try:
        page.wait_for_selector(selector, timeout=seconds * 1000)
    except TimeoutError:
        pytest.fail(f"page never showed {selector!r}; it shows {shown(page)}", pytrace=False)


def settled(page, seconds: float = 15):
    wait_until(page, "document.body.dataset.pending === '0'", seconds=seconds)


def probabilities(page) -> list[float]:
    return [float(p) for p in page.eval_on_selector_all("#probs li", "items => items.map(i => i.dataset.p)")]


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where a test saves its screenshot: CNNLAB_EXPLORER_SCREENSHOTS=docs refreshes the documentation's."""
    return Path(os.environ.get("CNNLAB_EXPLORER_SCREENSHOTS") or tmp_path) / name


def screenshot_between(page, first: str, last: str, path: Path, margin: int = 8):
    """A screenshot of the page's full width from element `first`'s top to element `last`'s bottom."""
    top, bottom = page.locator(first).bounding_box(), page.locator(last).bounding_box()
    scroll = page.evaluate("window.scrollY")
    page.screenshot(path=str(path), full_page=True,
                    clip={"x": 0, "y": top["y"] + scroll - margin, "width": page.viewport_size["width"],
                          "height": bottom["y"] + bottom["height"] - top["y"] + 2 * margin})


def shows_view(page, kind: str, seconds: float = 15):
    """Wait until the formula view of `kind` is open and its numbers have arrived."""
    wait_until(page, f"document.querySelector('#explain').dataset.kind === '{kind}' && "
                     "document.body.dataset.pending === '0'", seconds=seconds)


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


def open_unit(page, layer: str, index: int = 0, keyboard: bool = False):
    """Open unit `index` of `layer`'s row: a map, a named value (logits, probabilities) or a value of a vector
    (by keyboard: Home, then the arrow keys)."""
    row = page.locator(f".layer[data-layer='{layer}']")
    units = row.locator(".unit, .cell")
    if units.count():
        if keyboard:
            units.nth(index).focus()
            page.keyboard.press("Enter")
        else:
            units.nth(index).click()
    else:
        row.locator("canvas.vector").focus()
        page.keyboard.press("Home")
        for _ in range(index):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
    wait_until(page, f"document.querySelector('#explain').dataset.layer === {layer!r} && "
                     "document.body.dataset.pending === '0'")


def draw_stroke(page, points, steps_between: int = 1):
    """A mouse stroke through `points` (canvas pixels of the 280-pixel canvas)."""
    page.locator("#draw").scroll_into_view_if_needed()  # mouse coordinates are the viewport's
    box = page.locator("#draw").bounding_box()
    scale = box["width"] / 280
    page.mouse.move(box["x"] + points[0][0] * scale, box["y"] + points[0][1] * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=steps_between)
    page.mouse.up()


ONE = [(140 + i // 3, 50 + 15 * i) for i in range(13)]  # a vertical line: a 1 to any MNIST model


def test_explorer_end_to_end(browser, server, tmp_path):
    page = open_page(browser, server, 1280, height=800)
    mnist = load_dataset("mnist", "test", download=False)

    # A test image with a known label: the second test image, a 2.
    assert mnist.labels[1] == 2
    page.click(".examples button[data-index='1']")
    wait_until(page, "document.querySelector('#seen-note').textContent.includes('#1')")
    wait_until(page, "document.querySelector('#prediction').textContent === '2'")
    assert sum(probabilities(page)) == pytest.approx(1, abs=1e-4)
    assert page.inner_text("#announce") == f"Prediction: 2, {100 * max(probabilities(page)):.1f} percent."

    # Filter playground on that image: the Laplacian, then a hand-edited kernel, against NumPy; its window slides
    # over the same image, and the window's multiply-and-sum is the output pixel beside it.
    page.select_option("#filter-pick", "edge-detection-2")
    kernel = np.asarray(next(f["kernel"] for f in playground_entries() if f["name"] == "edge-detection-2"))
    image = np.pad(mnist.images[1] / 255, 1)
    expected = np.array([[(image[r:r + 3, c:c + 3] * kernel).sum() for c in range(28)] for r in range(28)])
    wait_until(page, RANGE_IS, [expected.min(), expected.max()])
    page.click("#pg-play")  # pause, then step to a place on the digit
    for _ in range(3):
        page.click("#pg-step")
    y, x = map(int, page.get_attribute("#pg-anim", "data-position").split(","))
    numbers = page.locator("#pg-numbers")
    assert float(numbers.get_attribute("data-sum")) == pytest.approx(expected[y, x], abs=1e-4)
    assert float(numbers.get_attribute("data-output")) == pytest.approx(expected[y, x], abs=1e-4)
    page.fill("#kernel input >> nth=4", "0")  # the Laplacian without its centre: a sum of 4 neighbours
    assert page.input_value("#filter-pick") == "custom"
    kernel[1, 1] = 0
    expected = np.array([[(image[r:r + 3, c:c + 3] * kernel).sum() for c in range(28)] for r in range(28)])
    wait_until(page, RANGE_IS, [expected.min(), expected.max()])

    # Draw a stroke: a vertical line is a 1 to any MNIST model.
    draw_stroke(page, ONE)
    wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('drawing')")
    wait_until(page, "document.querySelector('#prediction').textContent === '1'")
    settled(page)  # the stroke's last answer
    shown = probabilities(page)
    assert len(shown) == 10 and sum(shown) == pytest.approx(1, abs=1e-4)

    # Every layer's maps are there, drawn (not blank); the logits and the probabilities are named by class.
    counts = {name: page.locator(f".layer[data-layer='{name}'] .unit").count()
              for name in ("input", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2")}
    assert counts == {"input": 1, "conv1": 16, "relu1": 16, "pool1": 16, "conv2": 32, "relu2": 32, "pool2": 32}
    spread = page.eval_on_selector(".layer[data-layer='conv1'] canvas.sheet", """canvas => {
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let low = 255, high = 0;
        for (let i = 0; i < data.length; i += 4) { low = Math.min(low, data[i]); high = Math.max(high, data[i]); }
        return high - low; }""")
    assert spread > 100
    assert page.eval_on_selector_all(".layer[data-layer='fc2'] .cell", "c => c.map(e => e.textContent.split(':')[0])") \
        == list("0123456789")
    assert page.locator(".layer[data-layer='softmax'] .cell").count() == 10

    # Connections: pointing at a conv2 map highlights the 16 pool1 maps it reads; a fully connected unit, its 8
    # strongest inputs.
    page.hover(".layer[data-layer='conv2'] .unit >> nth=3")
    assert page.get_attribute("#network", "data-feeding") == " ".join(f"pool1:{k}" for k in range(16))
    screenshot_between(page, ".layer[data-layer='relu1']", ".layer[data-layer='relu2']",
                       screenshot_path(tmp_path, "explorer-links.png"))
    page.hover(".layer[data-layer='relu2'] .unit >> nth=3")
    assert page.get_attribute("#network", "data-feeding") == "conv2:3"
    page.locator(".layer[data-layer='fc2'] .cell >> nth=1").focus()
    assert len(page.get_attribute("#network", "data-feeding").split()) == 8

    # By keyboard: a conv2 map opens its view and the keyboard moves into it.
    open_unit(page, "conv2", 5, keyboard=True)
    shows_view(page, "conv")
    result, actual = shown_result(page)
    assert result == pytest.approx(actual, abs=1e-4)
    wait_until(page, "document.activeElement.id === 'detail-map'")
    assert page.locator("#learned canvas").count() == 16

    # The convolution view slides the kernel over the maps the layer reads: its output, computed here from the
    # model's numbers, is the model's map; Step moves the window.
    slide = page.locator("#explain .slide")
    assert float(slide.get_attribute("data-max-difference")) < 1e-4
    before = slide.get_attribute("data-position")
    slide.locator("button", has_text="Step").click()
    assert slide.get_attribute("data-position") != before
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-conv.png")))
    page.focus("#detail-map")  # Escape closes the view and brings the keyboard back to the map that opened it
    page.keyboard.press("Escape")
    wait_until(page, "document.activeElement.matches(\".layer[data-layer='conv2'] .unit[data-index='5']\")")

    # The first convolution slides over the digit itself.
    open_unit(page, "conv1", 2)
    shows_view(page, "conv")
    assert page.locator("#explain .slide h4").inner_text().startswith("The kernel slides over the input image")

    # ReLU opens on a negative input: f(x) = 0, the map before and after, the zeroed negatives counted, the point
    # on the plot of max(0, x).
    open_unit(page, "relu1", 4)
    shows_view(page, "activation")
    result, actual = shown_result(page)
    plot = page.locator("#explain canvas.plot")
    assert float(plot.get_attribute("data-x")) < 0 and result == actual == 0
    pair = page.locator("#explain .pair")
    assert int(pair.get_attribute("data-zeroed")) == int(pair.get_attribute("data-negatives")) > 0
    assert "a negative value becomes 0" in page.inner_text("#explain")
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-relu.png")))

    # A pooled pixel: its window drawn on the map before, its largest value marked, the value under the
    # enlarged map the model's own.
    open_unit(page, "pool1", 6)
    shows_view(page, "pool")
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-pool.png")))
    size = page.locator("#detail-map").bounding_box()["width"] / 12
    page.click("#detail-map", position={"x": 3.5 * size, "y": 4.5 * size})
    wait_until(page, "document.querySelector('#explain h3').textContent.includes('row 4, column 3')")
    settled(page)
    assert page.get_attribute("#field-map", "data-box") == "8,14,6,12"  # pool1 (4, 3): 6x6 pixels, 2 apart: rows 8-13
    assert page.get_attribute("#explain .pair", "data-window") == "8,10,6,8"  # 2x2, stride 2, on the 24x24 map
    page.focus("#detail-map")  # the arrow keys move the pixel
    page.keyboard.press("ArrowDown")
    wait_until(page, "document.querySelector('#explain h3').textContent.includes('row 5, column 3')")
    settled(page)
    assert page.get_attribute("#field-map", "data-box") == "10,16,6,12"
    window = [float(v) for v in page.eval_on_selector_all("#explain .grid span:not(.pad)", "s => s.map(e => e.title)")]
    marked = [float(v) for v in page.eval_on_selector_all("#explain .grid span.marked", "s => s.map(e => e.title)")]
    result, actual = shown_result(page)
    assert len(window) == 4 and max(window) == pytest.approx(actual, abs=1e-6) and result == actual
    assert marked and all(m == max(window) for m in marked)
    assert float(page.get_attribute("#detail-value", "data-actual")) == actual
    font = page.eval_on_selector("#explain .grid span", "e => parseFloat(getComputedStyle(e).fontSize)")
    assert font >= 13  # legible numbers

    # Flatten: the value's map, row and column, marked on that map.
    open_unit(page, "flatten", 21)
    shows_view(page, "flatten")
    assert page.get_attribute("#explain .view-map", "data-source") == "1,1,1"  # 21 = (1 x 4 + 1) x 4 + 1
    assert "= (1 × 4 + 1) × 4 + 1 = 21" in page.inner_text("#explain")
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-flatten.png")))

    # A fully connected unit: y decomposed into its positive and negative products and the bias (nothing hidden),
    # the largest products, what the others add, and what each of pool2's 32 maps adds.
    open_unit(page, "fc1", 7)
    shows_view(page, "linear")
    result, actual = shown_result(page)
    bars = [float(v) for v in page.eval_on_selector_all("#explain .bars >> nth=0 >> .bar-row",
                                                        "rows => rows.map(r => r.dataset.value)")]
    positive, negative, bias, y = bars
    assert positive > 0 > negative and positive + negative + bias == pytest.approx(actual, abs=1e-4)
    assert y == pytest.approx(actual, abs=1e-4)
    by_map = page.eval_on_selector_all("#explain .bars >> nth=1 >> .bar-row", "rows => rows.map(r => r.dataset.value)")
    assert sum(map(float, by_map)) + bias == pytest.approx(actual, abs=1e-4)  # 16 maps and "the other 16"
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-fc.png")))

    # The logits by class name, and the softmax.
    open_unit(page, "fc2", 1)
    shows_view(page, "linear")
    assert "(class 1)" in page.inner_text("#detail-title")
    open_unit(page, "softmax", 1)
    shows_view(page, "softmax")
    result, actual = shown_result(page)
    assert result == pytest.approx(actual, abs=1e-6) == pytest.approx(max(shown), abs=1e-4)
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-softmax.png")))

    page.click(".examples button[data-index='1']")  # the documentation's picture: the 2, pool1's window open
    settled(page)
    open_unit(page, "pool1", 6)
    shows_view(page, "pool")
    shot = screenshot_path(tmp_path, "explorer.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    anim = page.locator("#pg-anim")  # the playground's window placed on the digit by a click
    anim.click(position={"x": anim.bounding_box()["height"] * 0.4, "y": anim.bounding_box()["height"] * 0.45})
    y, x = map(int, page.get_attribute("#pg-anim", "data-position").split(","))
    assert 8 <= y <= 16 and 8 <= x <= 16
    page.locator("#playground").screenshot(path=str(screenshot_path(tmp_path, "explorer-playground.png")))
    assert page.foreign == [] and page.errors == []
    page.close()


def photographed(digit: np.ndarray, seed: int = 3) -> bytes:
    """A JPEG of an MNIST digit on shaded, tinted paper (benchmarks/photo_digits.py), 400x300."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from photo_digits import SMALL_SIZES, photograph

    return photograph(digit, np.random.default_rng(seed), SMALL_SIZES[:1]).jpeg


def test_explorer_on_a_phone_touch_and_upload(browser, server, tmp_path):
    page = open_page(browser, server, 390, touch=True, height=844, reduced_motion=True)
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
    settled(page)  # the stroke's last answer is in before the uploads

    # Uploads: a photo of a 0 on shaded paper is classified and replaces the drawing on the canvas; a blank page is
    # refused with the server's one-line reason beside the upload, which the next action clears.
    mnist = load_dataset("mnist", "test", download=False)
    assert mnist.labels[3] == 0
    photo, blank = tmp_path / "zero.jpg", tmp_path / "blank.png"
    photo.write_bytes(photographed(mnist.images[3]))
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(blank)
    page.set_input_files("#upload", str(photo))
    wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('zero.jpg')")
    wait_until(page, "document.querySelector('#prediction').textContent === '0'")
    wait_until(page, "document.querySelector('#draw').dataset.upload === 'zero.jpg'")
    centre = page.eval_on_selector("#draw", """c => Array.from(c.getContext('2d').getImageData(0, 0, c.width,
        c.height).data.filter((_, i) => i % 4 === 0)).filter(v => v < 250).length""")
    assert centre > 1000  # the photo's paper and ink, not a white canvas with the old stroke
    page.set_input_files("#upload", str(blank))
    wait_until(page, "document.querySelector('#upload-error').textContent === "
                     "'blank.png: no digit found (the image is blank)'")
    assert page.locator("#upload-error").is_visible() and page.inner_text("#prediction") == "0"
    page.click(".examples button[data-index='0']")
    wait_until(page, "document.querySelector('#upload-error').hidden")

    # Every control is a finger's size: 24x24 pixels at least.
    small = page.evaluate("""() => [...document.querySelectorAll(
        'button, select, input:not([type=file]), [tabindex], .unit, .cell, canvas.vector')]
        .filter(e => e.offsetParent !== null)
        .map(e => [e.id || e.className || e.tagName, e.getBoundingClientRect()])
        .filter(([, r]) => r.width < 24 || r.height < 24).map(([name, r]) => `${name} ${r.width}x${r.height}`)""")
    assert small == []

    # The formula views and the playground fit the phone too (wide tables scroll inside their panel).
    for layer, index, kind in (("conv2", 2, "conv"), ("relu1", 4, "activation"), ("pool1", 1, "pool"),
                               ("flatten", 21, "flatten"), ("fc1", 7, "linear"), ("softmax", 0, "softmax")):
        open_unit(page, layer, index)
        shows_view(page, kind)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, layer
        page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, f"explorer-phone-{kind}.png")))
    page.select_option("#pg-kernel", "7")
    settled(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator("#playground").screenshot(path=str(screenshot_path(tmp_path, "explorer-phone-playground.png")))
    open_unit(page, "pool1", 1)
    shows_view(page, "pool")
    page.screenshot(path=str(screenshot_path(tmp_path, "explorer-phone.png")), full_page=True)
    assert page.foreign == [] and page.errors == []
    page.close()


def seen_digit(page) -> np.ndarray:
    """The 28x28 digit the page sends to the model, read back from its 'what the model sees' canvas."""
    data = page.eval_on_selector("#seen", """canvas => Array.from(
        canvas.getContext('2d').getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))""")
    return np.asarray(data, np.uint8).reshape(28, 28)


def choose_source(page, source: str):
    page.select_option("#source", source)
    wait_until(page, "document.querySelector('#source-note').textContent !== '' && "
                     "document.body.dataset.pending === '0'")
    wait_for(page, ".layer[data-layer='softmax'], .layer[data-layer='scores']")


def test_a_drawn_digit_flows_through_every_layer_view(browser, server, trained_run):  # noqa: F811
    """Every row of the trained run and of resnet20 (batch norm, residual additions) and alexnet-2012 (local
    response normalization): the page's formula gives the model's value, and that value is what the model computed
    for the page's digit (recorded here by the test's own hooks)."""
    from test_web_formulas import recorded
    from cnnlab.web.sources import Sources

    page = open_page(browser, server, 1280, reduced_motion=True)  # 28 formulas opened: 21 -> 5 s
    draw_stroke(page, [(80 + min(step, 6) * 20 - max(0, step - 6) * 10, 70 + max(0, step - 6) * 28)
                       for step in range(12)])  # a 7: across, then down to the left
    wait_until(page, "document.querySelector('#seen-note').textContent.startsWith('drawing')")
    settled(page)
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
            open_unit(page, layer)
            index = [int(i) for i in page.get_attribute("#explain", "data-index").split(",")]
            result, actual = shown_result(page)
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
    """Photos of n x n pixels in the playground: its output size is PyTorch's, the window slides over that same
    photo, and when no window fits the page says why and shows no output."""
    import torch

    page = open_page(browser, server, 1280)
    rng = np.random.default_rng(0)
    for n, k, s, p, d in PLAYGROUND_SETTINGS:
        photo = tmp_path / f"square-{n}.png"
        Image.fromarray(rng.integers(0, 256, (n, n), dtype=np.uint8)).save(photo)
        page.set_input_files("#pg-photo", str(photo))
        page.select_option("#pg-kernel", str(k))
        for name, value in (("stride", s), ("padding", p), ("dilation", d)):
            page.fill(f"#pg-{name}", str(value))
        wait_until(page, "n => document.querySelector('#conv-input-name').textContent.startsWith(n)", f"square-{n}.png")
        settled(page)
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
            assert page.inner_text("#pg-numbers").startswith("no window fits")  # the window says so too
        elif span % s:
            assert f"{span}/{s} is not an integer" in why and f"the last {span % s} pixel(s)" in why
        else:
            assert why.startswith("The division is exact")
        if expected:
            assert page.get_attribute("#conv-output", "data-shape") == f"{expected},{expected}"
            # the window's place: its sum is the output pixel there (both read at once: the window moves on as the
            # animation plays, and two reads could see two places)
            window_sum, output = page.eval_on_selector("#pg-numbers", "e => [e.dataset.sum, e.dataset.output]")
            assert float(window_sum) == pytest.approx(float(output), abs=1e-4)

    # An edited 5x5 kernel with stride 2, padding 2 and dilation 1 on the digit, against NumPy.
    page.click("#pg-digit")
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

    # A larger photo: 300x200, scaled to 128 pixels a side by the browser, a 3x3 kernel with stride 2 and no
    # padding against NumPy on the image the page shows (and sends).
    photo = tmp_path / "photo.png"
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
    Top activations of a conv map: a progress bar, then 9 test images, each the one the API found; asked again,
    the cached answer at once."""
    import torch

    from cnnlab.data import dataset_info
    from cnnlab.viz.activations import normalize_input

    page = open_page(browser, server, 1280, reduced_motion=True)
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

    open_unit(page, "conv2", 3)
    wait_until(page, "!document.querySelector('#top-button').hidden")
    page.click("#top-button")
    wait_for(page, "#top-activations progress")
    # the search of 10,000 test images: seconds alone, several times that while the whole suite runs on 2 cores
    wait_until(page, "document.querySelector('#top-activations').dataset.state === 'done'", seconds=90)
    assert page.locator("#top-activations figure").count() == 9
    captions = page.eval_on_selector_all("#top-activations figcaption", "f => f.map(e => e.textContent)")
    assert all(c.startswith("test #") for c in captions)
    first = float(page.get_attribute("#top-activations", "data-ms"))
    repeats = []
    for _ in range(3):  # the same feature again: the cached answer
        page.click("#top-button")
        wait_until(page, "document.querySelector('#top-activations').dataset.state === 'done'")
        repeats.append(float(page.get_attribute("#top-activations", "data-ms")))
        assert page.eval_on_selector_all("#top-activations figcaption", "f => f.map(e => e.textContent)") == captions
    print(f"\ntop activations of conv2 map 3: first search {first:.0f} ms, repeated {repeats} ms "
          f"({cpu()}, a shared machine)")
    assert statistics.median(repeats) <= 200
    page.locator("#detail").screenshot(path=str(screenshot_path(tmp_path, "explorer-top-activations.png")))
    page.locator("#occlusion-panel").screenshot(path=str(screenshot_path(tmp_path, "explorer-occlusion.png")))
    assert page.errors == [] and page.foreign == []
    page.close()


# ---- keyboard, screen readers, axe-core ------------------------------------------------------------------------

def axe_violations(page) -> list[str]:
    """axe-core's serious and critical violations of WCAG 2.0-2.2 A and AA on the page as it is."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
        const result = await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}, resultTypes: ['violations']});
        return result.violations.filter(v => ['serious', 'critical'].includes(v.impact))
            .map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`); }""")
    return found


def test_keyboard_screen_readers_and_axe(browser, server, tmp_path):
    if not AXE.is_file():
        pytest.skip(f"needs axe-core at {AXE.relative_to(REPO)} (`make test` fetches it)")
    page = open_page(browser, server, 1280)
    settled(page)

    # Tab reaches every control, and each row of the overview once.
    page.focus("#source")
    stops = []
    for _ in range(160):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("""() => { const e = document.activeElement;
            const row = e.closest('.layer');
            return e.id || (row ? 'row:' + row.dataset.layer : e.className || e.tagName); }"""))
        if stops[-1] == "pg-step":
            break
    assert {"clear", "upload-button", "more-examples", "occ-run", "pg-photo-button", "pg-play"} <= set(stops)
    rows = [s for s in stops if s.startswith("row:")]
    expected = [f"row:{name}" for name in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1",
                                           "relu3", "fc2", "softmax")]
    assert rows == expected  # one stop per row (the input is no button)

    # Inside a row the arrow keys move; Enter opens the view and moves the keyboard into it; Escape returns.
    page.focus(".layer[data-layer='pool1'] .unit[tabindex='0']")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.index") == "2"
    assert page.eval_on_selector_all(".layer[data-layer='pool1'] .unit[tabindex='0']", "u => u.length") == 1
    page.keyboard.press("Enter")
    shows_view(page, "pool")
    wait_until(page, "document.activeElement.id === 'detail-map'")
    page.keyboard.press("Escape")
    wait_until(page, "document.activeElement.matches(\".layer[data-layer='pool1'] .unit[data-index='2']\")")
    assert page.locator("#detail").is_hidden()
    assert page.get_attribute("#announce", "aria-live") == "polite"
    assert page.inner_text("#announce").startswith("Prediction")

    # axe-core: no serious or critical violation, with a view open, at a desktop's and a phone's width.
    open_unit(page, "relu1", 3)
    shows_view(page, "activation")
    assert axe_violations(page) == []
    page.set_viewport_size({"width": 390, "height": 844})
    open_unit(page, "fc1", 2)
    shows_view(page, "linear")
    assert axe_violations(page) == []
    assert page.errors == [] and page.foreign == []
    page.close()


# ---- requests and latency --------------------------------------------------------------------------------------

def cpu() -> str:
    """The CPU the figures were measured on, and how busy the machine was."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else \
        platform.processor()
    return f"{model}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


def latencies(page, strokes: int) -> list[float]:
    """Pointer-up to painted (ms, as the page measures it) for `strokes` strokes of 12 moves."""
    times = []
    for i in range(strokes):
        page.click("#clear")
        draw_stroke(page, [(120 + 4 * i % 40, 50 + 15 * j) for j in range(12)])
        settled(page, 30)
        wait_until(page, "document.body.dataset.answerMs !== undefined")
        times.append(float(page.evaluate("document.body.dataset.answerMs")))
        page.evaluate("delete document.body.dataset.answerMs")
    return times


def p95(values) -> float:
    return float(np.percentile(values, 95))


def oversubscribed() -> bool:
    """More than two processes per core want to run (the suite's own two workers on two cores are not that): a
    time measured then is the neighbours' as much as the page's."""
    return os.getloadavg()[0] > 2 * (os.cpu_count() or 1)


def within(page, source: str, strokes: int, median: float | None, worst: float, rounds: int = 3) -> list[float]:
    """Latencies on `source` meeting median <= `median` and p95 <= `worst` ms in one of `rounds` rounds: the
    machine is shared, and a round the neighbours slowed down is measured again (each round is printed). On an
    oversubscribed machine the figures are printed and not held to the targets."""
    choose_source(page, source)
    switch = float(page.evaluate("document.body.dataset.switchMs"))
    print(f"{source}: switched to in {switch:.0f} ms (the model built and its answer shown; {cpu()})")
    assert switch <= 1000 or oversubscribed()
    for round_ in range(rounds):
        times = latencies(page, strokes)
        print(f"{source}: pointer-up to painted, {strokes} strokes: median {statistics.median(times):.0f} ms, "
              f"p95 {p95(times):.0f} ms (round {round_ + 1}; {cpu()}, a shared machine)")
        if (median is None or statistics.median(times) <= median) and p95(times) <= worst:
            return times
    message = (f"{source}: median {statistics.median(times):.0f} ms, p95 {p95(times):.0f} ms in {rounds} rounds "
               f"(targets: median {median} ms, p95 {worst} ms)")
    if oversubscribed():
        warnings.warn(f"not held to the targets, the machine is oversubscribed ({cpu()}): {message}")
        return times
    pytest.fail(message)


def test_one_request_at_a_time_and_latency(browser, server):
    """A stroke of 40 moves asks the server a handful of times (one request in flight, the latest stroke sent when
    the answer arrives); pointer-up to painted within the issue's targets on simple-cnn, LeNet-5 and ResNet-18; a
    switch of model within 1 s. The figures are printed with the CPU."""
    page = open_page(browser, server, 1280, height=800)
    settled(page)
    asked, in_flight, most_in_flight = [], set(), [0]

    def sent(request):
        if "/api/" in request.url:
            asked.append(request.url.split("/api/")[1].split("?")[0])
            in_flight.add(request)
            most_in_flight[0] = max(most_in_flight[0], sum(r.url.endswith("/api/predict") for r in in_flight))

    page.on("request", sent)
    page.on("requestfinished", lambda request: in_flight.discard(request))
    page.on("requestfailed", lambda request: in_flight.discard(request))  # aborted as stale
    started = time.perf_counter()
    draw_stroke(page, [(100 + 2 * i, 40 + 5 * i) for i in range(41)])
    drawing = time.perf_counter() - started
    settled(page)
    print(f"\na stroke of 40 moves ({drawing:.1f} s): {len(asked)} requests: {asked}")
    # While drawing, one answer at a time, asked for at most every 0.4 s (longer when answers are slow), then the
    # finished stroke's: a handful for a stroke of a second or two, however many moves; never one per move.
    assert most_in_flight[0] == 1 and asked[-1] == "convolve"
    assert asked.count("predict") <= int(drawing / 0.4) + 2 and asked.count("predict") < 40 // 4, asked

    within(page, "model:lenet5", 10, median=100, worst=250)  # each built on first use: a run switch's cost
    within(page, "model:resnet18", 6, median=None, worst=500)
    within(page, "run:tiny", 10, median=100, worst=250)
    switches = {}
    for source in ("run:tiny", "model:lenet5", "model:resnet18", "run:tiny"):
        choose_source(page, source)
        switches[source] = float(page.evaluate("document.body.dataset.switchMs"))
    print(f"model switches (ms, the new model's answer on the screen): {switches} ({cpu()}, a shared machine)")
    assert max(switches.values()) <= 1000 or oversubscribed()
    assert page.errors == [] and page.foreign == []
    page.close()
