"""Every `cnnlab ...` command in README.md, docs/*.md and labs/README.md, read by the real parser: a flag renamed
or removed breaks this test rather than the reader's first try. The short ones run as written."""

import argparse
import functools
import re
import shlex
import shutil
from pathlib import Path

import pytest

from cnnlab.cli import build_parser

from conftest import run_in_process, train_into

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "labs" / "README.md"]
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")  # RUN, NAME, RUN0, S, N: a value the reader fills in
SHELL = {"&&", "||", "|", ";", ">", ">>", "2>", "2>&1", "<"}


def _blocks(text: str):
    """(line number, text) of each shell line inside fenced code blocks, continuation lines joined."""
    fence, pending, start = None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = None if fence is not None else line.strip()[3:]
            continue
        if fence is None or fence not in ("", "bash", "sh", "shell", "console"):
            continue
        line = line.strip().removeprefix("$ ")
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def _inline(text: str):
    for number, line in enumerate(text.splitlines(), 1):
        for span in re.findall(r"`(cnnlab [^`]+)`", line):
            yield number, span.replace("\\|", "|")


def _cnnlab_words(line: str) -> list[list[str]] | None:
    """The argument lists of the `cnnlab` commands in a shell line (env assignments, `python -m cnnlab`,
    `torchrun ... -m cnnlab`, pipes and redirections understood); [] when it holds none."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return None
    commands, current = [], []
    for token in tokens + ["&&"]:
        if token in SHELL or token.startswith((">", "2>")):
            if current:
                commands.append(current)
            current = []
            continue
        current.append(token)
    found = []
    for words in commands:
        for i, word in enumerate(words):
            if word == "cnnlab" and (i == 0 or words[i - 1] == "-m" or all("=" in w for w in words[:i])):
                found.append(words[i + 1:])
                break
    return found


def _is_synopsis(argv: list[str]) -> bool:
    """[OPTIONAL] parts, `...`, a|b alternatives or a COMMAND placeholder: a form to read, not a line to run."""
    return any(word in ("...", "…", "COMMAND") or (word.startswith("[") or word.endswith("]")) and
               not word.startswith(("{", "'")) or ("|" in word and not word.startswith("{")) for word in argv)


def commands():
    """(where, kind, argv) of every documented `cnnlab` command: kind 'line' for a command in a code block,
    'span' for one in running text (`cnnlab transfer` there names the command), 'synopsis' for a form with
    [...], ... or a|b."""
    for page in PAGES:
        text = page.read_text()
        where = page.relative_to(REPO)
        found = [(number, "line", argv) for number, line in _blocks(text) for argv in _cnnlab_words(line) or []]
        found += [(number, "span", argv) for number, span in _inline(text)
                  for argv in _cnnlab_words(span) or [span.split()[1:]]
                  if not re.match(r"cnnlab [\w ]*\w: ", span)]  # `cnnlab train: error: ...` quotes a message
        for number, kind, argv in found:
            yield f"{where}:{number}", "synopsis" if _is_synopsis(argv) else kind, argv


@functools.cache
def _parser() -> argparse.ArgumentParser:
    return build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> dict:
    if parser._subparsers is None:
        return {}
    return next(a for a in parser._subparsers._group_actions if isinstance(a, argparse._SubParsersAction)).choices


def _command_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, int]:
    """The parser of the (sub)command `argv` starts with, and how many words name it."""
    parser, used = _parser(), 0
    while used < len(argv) and argv[used] in _subcommands(parser):
        parser, used = _subcommands(parser)[argv[used]], used + 1
    return parser, used


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    """The options of a command and, for one whose subcommand a synopsis leaves out (`cnnlab show ...`), theirs."""
    return {s for a in parser._actions for s in a.option_strings}.union(
        *(_flags(sub) for sub in _subcommands(parser).values()))


def _filled(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`argv` with a number for each placeholder given to a numeric option (`--seed S`)."""
    numeric = {s for a in parser._actions if a.type in (int, float) for s in a.option_strings}
    return [("1" if i and argv[i - 1] in numeric and PLACEHOLDER.fullmatch(word) else word)
            for i, word in enumerate(argv)]


def check(argv: list[str], kind: str, capsys) -> str | None:
    """None if the parser takes the documented command, else what it says."""
    parser, used = _command_parser(argv)
    if used == 0 and argv[:1] not in (["COMMAND"], ["--help"], ["--version"]) and argv:
        return f"no command {argv[0]!r}"
    if kind == "synopsis":
        flags = _flags(parser)
        unknown = [w.strip("[]").split("=")[0] for w in argv[used:] if w.strip("[]").startswith("--")
                   and w.strip("[]").split("=")[0] not in flags and argv[:1] != ["COMMAND"]]
        return f"no such option {', '.join(unknown)}" if unknown else None
    if kind == "span" and used == len(argv):  # `cnnlab transfer` in a sentence names the command
        return None
    try:
        _parser().parse_args(argv[:used] + _filled(parser, argv[used:]))
    except SystemExit as exit:
        if exit.code == 0:  # --help
            capsys.readouterr()
            return None
        error = capsys.readouterr().err.strip()
        chose = re.search(r"invalid choice: '([^']*)'", error)
        if chose and PLACEHOLDER.fullmatch(chose[1]):  # `cnnlab experiment NAME`: one of the names listed there
            return None
        return error or f"exit {exit.code}"
    return None


def test_every_documented_command_parses(capsys):
    found = list(commands())
    assert len(found) > 150 and {page.name for page in PAGES} >= {"README.md", "segmentation.md", "cli.md"}
    wrong = [f"{where}: `cnnlab {' '.join(argv)}`: {said}" for where, kind, argv in found
             if (said := check(argv, kind, capsys))]
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("argv,said", [
    (["train", "--recipe", "fastest"], "invalid choice: 'fastest'"),
    (["segment", "train", "--augment", '{"flip": 0.5}'], "unknown option --augment"),
    (["train", "--lr-rate", "0.01"], "unknown option --lr-rate (did you mean --lr?)"),
    (["show", "filters", "RUN", "my_digit.png"], "unexpected argument 'my_digit.png'"),
    (["nonsense"], "no command 'nonsense'"),
])
def test_the_check_catches_what_a_reader_would_meet(capsys, argv, said):
    assert said in check(argv, "line", capsys)


# -- the short ones, run as written (RUN, NAME and runs/NAME: a small trained run; my_digit.png: a drawn digit) ---

RUNNABLE = ("summary", "info", "runs", "evaluate", "predict", "show features", "show saliency", "show occlusion")


def _runnable():
    """The documented lines of the cheap commands, each distinct line once."""
    seen = set()
    for where, kind, argv in commands():
        if tuple(argv) in seen:
            continue
        seen.add(tuple(argv))
        words = " ".join(argv[:2])
        # not a run of the docs' own making (runs/resnet20-photos-...) nor a model file of yours: none here
        # nor a picture in a folder of the reader's own (photos/class2/000002.jpg)
        named = [w for w in argv if w.startswith("runs/") and not re.fullmatch(r"runs/[A-Z]+", w) or ".py:" in w
                 or re.search(r"/.*\.(png|jpe?g)$", w)]
        # docs/localization.md's runs/NAME is a localization run (tests/test_matrix.py runs each command on one)
        other_task = where.startswith("docs/localization.md")
        if kind == "line" and (argv[0] in RUNNABLE or words in RUNNABLE) and "--tta" not in argv and not named \
                and not other_task:
            yield where, argv


@pytest.fixture(scope="session")
def small_run(shared) -> Path:
    """simple-cnn after one epoch on 3,000 MNIST images, in a run folder named NAME, as the docs call a run: built
    once per session (tests/test_familiarity.py reads it too)."""
    return shared.get("small-mnist-run", lambda root: train_into(root, "NAME", epochs=1, train_limit=3000,
                                                                 test_limit=500, threads=1, device="cpu"))


@pytest.fixture
def docs_folder(small_run, tmp_path):
    """A folder as the docs' reader has one: runs/NAME (the small run, read only), my_digit.png (a drawn 7) and
    grace_hopper.jpg; what the commands write goes here."""
    from PIL import Image, ImageDraw

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "NAME").symlink_to(small_run)
    image = Image.new("L", (200, 240), 255)
    ImageDraw.Draw(image).line([(40, 40), (160, 40), (90, 210)], fill=0, width=18)
    image.save(tmp_path / "my_digit.png")
    import matplotlib

    shutil.copy(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", tmp_path)  # docs/inside.md's
    return tmp_path


def _as_written(argv: list[str]) -> list[str]:
    return ["NAME" if PLACEHOLDER.fullmatch(w) or re.fullmatch(r"runs/[A-Z]+", w) else w for w in argv]


def test_the_short_documented_commands_run_as_written(docs_folder, capsys, monkeypatch):
    monkeypatch.chdir(docs_folder)
    ran = []
    for where, argv in _runnable():
        code, out, err = run_in_process(capsys, *_as_written(argv))
        assert code == 0 and "Traceback" not in err, f"{where}: cnnlab {' '.join(argv)}: {err[-400:]}"
        ran.append(argv[0])
    assert {"summary", "evaluate", "predict", "show"} <= set(ran)


def test_documented_receptive_fields_are_what_summary_prints(capsys):
    """`cnnlab summary vgg16  # features.28: 196 /16`: each layer a comment names has the field it gives."""
    checked = 0
    for page in PAGES:
        for number, line in _blocks(page.read_text()):
            argv = (_cnnlab_words(line) or [[]])[0]
            if argv[:1] != ["summary"] or "#" not in line:
                continue
            code, out, _ = run_in_process(capsys, *argv, "--markdown")
            fields = {cells[0].lower(): cells[3] for row in out.splitlines() if row.startswith("|")
                      for cells in [[c.strip() for c in row.strip("|").split("|")]] if len(cells) == 6}
            for layer, field in re.findall(r"([A-Za-z][\w.]*):? (\d+ /\d+|all)\b", line.split("#", 1)[1]):
                assert fields.get(layer.lower()) == field, f"{page.name}:{number}: {layer} is not {field}"
                checked += 1
    assert checked >= 6
