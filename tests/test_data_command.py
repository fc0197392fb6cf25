"""`cnnlab data PATH_OR_NAME`: counts, sizes, statistics and a contact sheet, within 80 columns."""

import json

import numpy as np
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import folders

from conftest import run_in_process
from test_folder_data import COLOURS, make_folder


def test_a_folder_described(tmp_path, capsys):
    folders.decoded.cache_clear()
    root = make_folder(tmp_path / "photos", per_class=10)
    (root / "red" / "readme.txt").write_text("not an image")
    code, out, err = run_in_process(capsys, "data", root, "--sheet", tmp_path / "sheet.png", "--per-class", 4)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines() if str(tmp_path) not in line) <= 80
    assert f"folder:{root}" in out and "3 classes, 24 train / 6 test images of 3x32x32" in out
    assert "width 40-44 (median 42), height 30-34 (median 32)" in out
    assert "skipped red/readme.txt: not an image" in out
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.mode == "RGB" and sheet.height == 3 * (48 + 4) + 4
    # each row shows its class: the red row's tiles are red
    red_row = np.asarray(sheet)[2 * 52 + 4 + 24, -30]
    assert red_row[0] > 150 and red_row[2] < 100, red_row
    code, out, _ = run_in_process(capsys, "data", f"folder:{root}", "--json", "--sheet", tmp_path / "s.png",
                                  "--dataset-options", '{"side": 16, "color": "gray"}')
    found = json.loads(out)
    assert found["shape"] == [1, 16, 16] and found["per_class"]["train"] == [8, 8, 8]
    assert found["skipped"] == [{"file": "red/readme.txt", "why": "not an image"}]
    assert abs(found["mean"][0] - np.mean([np.dot(c, (0.299, 0.587, 0.114)) for c in COLOURS.values()]) / 255) < 0.05


def test_a_registered_dataset_described(tmp_path, capsys):
    code, out, err = run_in_process(capsys, "data", "mnist", "--json", "--sheet", tmp_path / "mnist.png")
    found = json.loads(out)
    assert code == 0 and found["images"] == {"train": 60000, "test": 10000}
    assert abs(found["mean"][0] - 0.1307) < 1e-3 and abs(found["std"][0] - 0.3081) < 1e-3  # the registry's values
    assert Image.open(tmp_path / "mnist.png").height == 10 * 52 + 4


def test_what_is_not_a_dataset_is_one_line(tmp_path, capsys):
    for args, message in [(["no-such-set"], "unknown dataset 'no-such-set'"),
                          (["mnist-scenes"], "describes classification datasets"),
                          ([f"folder:{tmp_path}"], "no class folders"),
                          (["mnist", "--per-class", "0"], "--per-class must be from 1 to 64")]:
        code, _, err = run_in_process(capsys, "data", *args, "--sheet", tmp_path / "x.png")
        assert code == 2 and err.count("\n") == 1 and message in err, err
