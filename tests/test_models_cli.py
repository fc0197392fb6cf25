"""`cnnlab zoo` and `cnnlab summary`, through the CLI entry point; docs/zoo.md holds their current output."""

from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.models.zoo import family_table, vgg_table

DOCS = Path(__file__).parents[1] / "docs" / "zoo.md"


def test_zoo_vgg_reproduces_the_papers_table(capsys):
    assert main(["zoo", "--family", "vgg", "--markdown"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("ConvNet configuration"):]
    assert "| weight layers         | 11          | 11          | 13          | 16          | 16          | 19" in table
    assert "| parameters            | 133 M       | 133 M       | 133 M       | 134 M       | 138 M       | 144 M       |" in table
    rows = table.splitlines()
    assert sum("conv1-256" in r for r in rows) == 1 and sum(" LRN " in r for r in rows) == 1
    assert "| vgg-d     | 3x224x224 |            16 | 138,357,544 | 15.47 G |        27.0 |         8.8 |" in out


def test_zoo_resnet_lists_the_papers_variants_with_errors(capsys):
    assert main(["zoo", "--family", "resnet", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| resnet34 shortcut=A          | 3x224x224 |            34 | 21,623,848 | 3.644 G |       25.03 |        7.76 |" in out
    assert "| plain34                      | 3x224x224 |            34 | 21,623,848 | 3.644 G |       28.54 |       10.02 |" in out
    assert "| resnet152 stride_in_1x1=True | 3x224x224 |           152 | 60,192,808 | 11.28 G |       21.43 |        5.71 |" in out
    assert "| conv4_x         | 14x14       | [3x3, 256; 3x3, 256] x 2         | [3x3, 256; 3x3, 256] x 6  " in out
    assert "[1x1, 256; 3x3, 256; 1x1, 1024] x 36 |" in out  # the paper's Table 1, read back from resnet152
    docs = DOCS.read_text()
    for table in (block for block in out.split("\n\n") if block.startswith("|")):
        assert table.strip() in docs, "docs/zoo.md is stale: regenerate its tables with `cnnlab zoo --markdown`"


def test_zoo_at_a_small_input_shows_the_adapted_models(capsys):
    assert main(["zoo", "--family", "vgg", "--input", "1x28x28", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| vgg-d     | 1x28x28 |            16 | 15,243,978 | 268.2 M |" in out
    assert "FC-512" in out and "top-1 err" not in out  # published errors belong to the native networks


def test_docs_hold_the_current_tables():
    docs = DOCS.read_text()
    for table in (family_table("vgg"), vgg_table(), family_table("resnet-cifar", (1, 28, 28), 10)):
        assert table in docs, "docs/zoo.md is stale: regenerate its tables with `cnnlab zoo --markdown` (see the file)"


def test_summary_table_and_totals(capsys):
    assert main(["summary", "resnet20", "--input", "1x28x28", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| layer3.0.downsample | ZeroPadShortcut   | 64x7x7   |           37 /4 |" in out
    assert "| fc                  | Linear            | 10       |             all |        650 |       640 |" in out
    assert "weight layers:        20" in out and "parameters:           269,434" in out


@pytest.mark.parametrize("argv,message", [
    (["summary", "resnet35"], "unknown model 'resnet35' (did you mean"),
    (["summary", "lenet5", "--input", "28x28"], "--input: expected CxHxW"),
    (["summary", "lenet5", "--model-options", "{"], "--model-options: not valid JSON"),
    (["summary", "alexnet", "--input", "1x8x8"], "alexnet cannot take a 1x8x8 input"),
    (["zoo", "--family", "transformers"], "--family: unknown family 'transformers'"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    try:
        code = main(argv)
    except SystemExit as exit:  # a flag argparse refuses
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
