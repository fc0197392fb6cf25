"""Usage errors point the way, at once: the command that was run is named, with the nearest flag, subcommand,
choice or run; a missing run says where it was looked for; and the process refuses before it loads torch."""

import os
import resource
import subprocess
import sys

import pytest

from conftest import run_in_process


@pytest.mark.parametrize("argv,said", [
    (["train", "--lr-rate", "0.01"], "cnnlab train: error: unknown option --lr-rate (did you mean --lr?); "
                                     "see `cnnlab train --help`"),
    (["segment", "train", "--epohcs", "2"], "cnnlab segment train: error: unknown option --epohcs (did you mean "
                                           "--epochs?)"),
    (["trian"], "cnnlab: error: argument COMMAND: invalid choice: 'trian' (did you mean 'train'?); choose from train"),
    (["segment", "evalute", "x"], "cnnlab segment: error: argument ACTION: invalid choice: 'evalute' (did you mean "
                                  "'evaluate'?)"),
    (["train", "--optimizer", "adma"], "cnnlab train: error: argument --optimizer: invalid choice: 'adma' (did you "
                                       "mean 'adam'?); choose from sgd, adam, adamw"),
    (["show", "filters", "RUN", "my_digit.png"], "cnnlab show filters: error: unexpected argument 'my_digit.png' "
                                                 "(cnnlab show filters takes RUN; see `cnnlab show filters --help`)"),
    (["segment", "train", "--epochs", "0"], "cnnlab segment train: error: epochs must be at least 1, got 0"),
    (["show", "features", "--index", "0"], "cnnlab show features: error: give a RUN folder, or --model FILE.py:NAME"),
])
def test_a_usage_error_names_the_command_and_the_nearest_spelling(capsys, argv, said):
    code, out, err = run_in_process(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(said), err


def test_a_missing_run_says_where_it_looked_and_what_is_near(capsys, tmp_path, monkeypatch):
    (tmp_path / "runs" / "simple-cnn-mnist-20261201-101500").mkdir(parents=True)
    (tmp_path / "runs" / "simple-cnn-mnist-20261201-101500" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_in_process(capsys, "evaluate", "simple-cnn-mnist-20261201-101599")
    assert code == 2
    assert err == (f"cnnlab evaluate: error: simple-cnn-mnist-20261201-101599: no such run folder (looked in "
                   f"{tmp_path} and in {tmp_path / 'runs'}, did you mean runs/simple-cnn-mnist-20261201-101500?)\n")
    code, _, err = run_in_process(capsys, "show", "saliency", "nothing-like-it")
    assert code == 2 and err.endswith("`cnnlab runs` lists the runs there)\n")


def test_a_run_is_found_by_its_name_in_the_runs_folder_from_anywhere(tmp_path, monkeypatch):
    from cnnlab.train import runs

    (tmp_path / "elsewhere" / "mine").mkdir(parents=True)
    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path / "elsewhere")  # as $CNNLAB_RUNS sets it
    monkeypatch.chdir(tmp_path)
    assert runs.find_run("mine") == tmp_path / "elsewhere" / "mine"


# Each is refused by a fresh process, as a user meets it: the process is what is measured.
REFUSED = [
    ["train", "--epochs", "0"],                  # a TrainConfig range
    ["evaluate", "runs/does-not-exist"],         # a run that is not there
    ["train", "--lr-rate", "0.01"],              # a flag that does not exist
    ["transfer", "--from", "x", "--dataset", "mnist", "--mode", "fine-tune", "--lr", "-1"],
]


@pytest.mark.parametrize("argv", REFUSED, ids=lambda argv: " ".join(argv[:2]))
def test_usage_errors_come_before_torch_in_under_half_a_second(argv, tmp_path):
    """Measured in CPU seconds of the child (its user + system time), which a loaded machine does not inflate as
    it does the wall clock: loading torch alone costs about 1.5 s of it, which is what the check keeps out."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    probe = ("import sys, runpy; sys.argv = ['cnnlab', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('cnnlab', run_name='__main__')\n"
             "finally:\n    print('torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "COLUMNS": "80"}, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    message, loaded = result.stderr.strip().splitlines()
    assert result.returncode == 2 and message.startswith(f"cnnlab {argv[0]}: error: ")
    assert loaded == "False" and cpu < 0.5, f"{cpu:.2f} s of CPU, torch loaded: {loaded}"
