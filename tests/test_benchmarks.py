"""The benchmarks and the example run, each in its short mode: the code paths they take, in seconds, on real data.
(benchmarks/gpu.py is tested in test_reliability.py, the segmentation error, probe and speed scripts in
test_seg_train.py.)"""

import json
import re
import subprocess
import sys


from conftest import REPO


def python(script, *args, cwd=None) -> str:
    out = subprocess.run([sys.executable, REPO / script, *map(str, args)], capture_output=True, text=True,
                         timeout=300, cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_time_to_accuracy_benchmark_quick(tmp_path):
    out = python("benchmarks/mnist_time_to_accuracy.py", "--quick", "--target", "0.5", "--threads", "1", cwd=tmp_path)
    rows = dict(re.findall(r"^\| (reference \(PyTorch examples\)|cnnlab default) \| (.*) \|$", out, re.M))
    assert set(rows) == {"reference (PyTorch examples)", "cnnlab default"}
    for cells in rows.values():
        epochs, seconds, accuracy = cells.split(" | ")
        # One epoch of 2,000 images, 1,000 test images: measured 87.3% (reference) and 80.2% (cnnlab, whose
        # one-cycle schedule is squeezed into 32 steps).
        assert epochs == "1" and float(seconds) > 0 and float(accuracy.rstrip("%")) / 100 >= 0.5
    assert re.search(r"^speed-up: \d+\.\dx$", out, re.M)


def test_scratch_vs_torch_benchmark_on_a_few_batches():
    out = python("benchmarks/scratch_vs_torch.py", "--limit", "640", "--threads", "1")
    rows = {m[0]: m[1:] for m in re.findall(r"^(torch|scratch)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)%$", out, re.M)}
    assert set(rows) == {"torch", "scratch"}
    # Same initial weights, batches and updates: the two engines end with the same test accuracy (measured 44.24%
    # both; 10 SGD steps).
    assert rows["torch"][3] == rows["scratch"][3]
    # The printed ratio is of the unrounded times: within what the 2-decimal epoch seconds allow.
    ratio = float(re.search(r"scratch / torch epoch time: ([\d.]+)x", out).group(1))
    scratch, torch_ = float(rows["scratch"][0]), float(rows["torch"][0])
    assert (scratch - 0.005) / (torch_ + 0.005) - 0.005 <= ratio <= (scratch + 0.005) / (torch_ - 0.005) + 0.005


def test_first_cnn_from_scratch_example_quick(tmp_path):
    out = python("examples/first_cnn_from_scratch.py", "--quick", cwd=tmp_path)
    # The script asserts its own target (70%; measured 83.1%); here: it trained one epoch and reported it.
    assert re.search(r"^epoch 1: train loss [\d.]+, test accuracy [\d.]+%", out, re.M)
    assert "test accuracy after 1 epochs" in out


def test_segmentation_benchmark_short(tmp_path):
    """benchmarks/segmentation.py with its own size options (a few steps of FCN-8s): a run folder and a row."""
    out = python("benchmarks/segmentation.py", "--models", "fcn-8s", "--epochs", "1", "--train-limit", "32",
                 "--test-limit", "16", "--threads", "1", "--runs-dir", tmp_path / "runs", "--json", tmp_path / "rows.jsonl",
                 "--quiet", cwd=tmp_path)
    (row,) = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert row["model"] == "fcn-8s" and row["train_scenes"] == 32 and row["test_scenes"] == 16
    assert 0 <= row["mean_iou"] <= 1 and (tmp_path / "runs" / "fcn-8s" / "model.safetensors").is_file()
    assert f"| fcn-8s | {row['parameters']:,} | 1 x 32 | 16 |" in out
