"""One meaning per option name across every command: types agree, shared names are in the vocabulary,
retired names answer with a hint, and docs/cli.md's vocabulary table lists every shared name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gsam.cli import cli
from gsam.commands.options import VOCABULARY

ROOT = Path(__file__).resolve().parents[1]


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def _options() -> dict[str, list[tuple[str, click.Option]]]:
    """Every visible option name -> [(command, option)], over every command."""
    found: dict[str, list[tuple[str, click.Option]]] = {}
    for command_name, command in _commands():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for name in param.opts:
                    found.setdefault(name, []).append((command_name, param))
    return found


def _kind(option: click.Option) -> tuple:
    """What the value is: the parameter type's class (and choices), one or many, flag or value."""
    choices = tuple(option.type.choices) if isinstance(option.type, click.Choice) else ()
    return type(option.type).__name__, choices, option.multiple, option.is_flag


def test_an_option_name_has_one_type_in_every_command():
    clashes = {name: sorted({(command, _kind(option)) for command, option in uses})
               for name, uses in _options().items() if len({_kind(option) for _, option in uses}) > 1}
    assert clashes == {}


def test_every_option_shared_by_two_commands_has_one_meaning_in_the_vocabulary():
    shared = {name for name, uses in _options().items() if len({command for command, _ in uses}) > 1}
    shared -= {"-h", "--help"}
    assert sorted(shared - set(VOCABULARY)) == []


def test_the_vocabulary_check_catches_two_types_under_one_name():
    @click.command()
    @click.option("--max-pixels", type=click.IntRange(1))
    def one(max_pixels):
        pass

    @click.command()
    @click.option("--max-pixels", type=click.Choice(["a", "b"]))
    def two(max_pixels):
        pass

    kinds = {_kind(one.params[0]), _kind(two.params[0])}
    assert len(kinds) == 2


def test_the_docs_vocabulary_table_lists_every_shared_name():
    page = (ROOT / "docs" / "cli.md").read_text()
    table = page[page.index("## One vocabulary"):]
    missing = [name for name in VOCABULARY if f"`{name}`" not in table]
    assert missing == []


@pytest.mark.parametrize("args, hint", [
    (["predict", "model.onnx", "x.png", "--out", "o", "--max-pixels", "5"], "was renamed --tile-above"),
    (["triton", "build", "m.onnx", "--tile", "512"], "was renamed --oversize-tile"),
    (["triton", "build", "m.onnx", "--max-image-pixels", "5"], "was renamed --max-tiled-pixels"),
    (["triton", "build", "m.onnx", "--fp16"], "was renamed --precision fp16"),
    (["triton", "build", "m.onnx", "--accelerator-precision", "fp16"], "was renamed --precision"),
    (["export", "tensorrt", "m.onnx", "--out", "m.plan", "--fp16"], "was renamed --precision fp16"),
    (["triton", "build", "m.onnx", "--version", "2"], "was renamed --model-version"),
    (["deploy", "run", "--out", "o", "--profiles", "auto"], "replaced by --profile"),
    (["deploy", "run", "--out", "o", "--precision", "int8"], "was renamed --precisions"),
    (["bench", "run", "--out", "o", "--backend", "torch"], "was renamed --backends"),
    (["bench", "--model", "run", "--out", "o"], "replaced by the first argument"),
    (["triton", "k8s", "triton_models", "--out", "o"], "the repository is given as --repo now"),
    (["triton", "k8s", "--repo", "r", "--out", "o", "--image", "x:24.08-py3"], "was renamed --container-image"),
    (["serve", "--timeout", "5"], "was renamed --ready-timeout"),
    (["serve", "--triton-model", "gsam_python"], "was renamed --triton-models"),
    (["data", "synth", "--out", "o", "--num-classes", "3"], "was renamed --classes"),
    (["data", "synth", "--out", "o", "--min-size", "40"], "was renamed --min-side"),
    (["import-reference", "x.pth", "--out", "o", "--num-classes", "2"], "was renamed --classes"),
    (["export", "tensorrt", "m.onnx", "--out", "m.plan", "--bf16"], "was removed"),
])
def test_retired_option_names_are_refused_with_a_one_line_hint(args, hint):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and hint in result.output, result.output
    assert "Traceback" not in result.output


def test_the_precision_table_drives_the_choices():
    from gsam.precisions import AMP_CHOICES, ONNX_PRECISIONS, PRECISIONS

    export_onnx = cli.commands["export"].commands["onnx"]
    precision = next(p for p in export_onnx.params if p.name == "precision")
    assert tuple(precision.type.choices) == ONNX_PRECISIONS
    amp = next(p for p in cli.commands["predict"].params if p.name == "amp")
    assert tuple(amp.type.choices) == AMP_CHOICES and amp.default == "auto"
    assert all(dataclasses.is_dataclass(row) for row in PRECISIONS.values())


def test_the_docs_precision_table_has_a_row_per_precision():
    from gsam.precisions import PRECISIONS

    page = (ROOT / "docs" / "export.md").read_text()
    table = page[page.index("## Precisions"):].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| precision")]
    assert [row.split("|")[1].strip() for row in rows] == list(PRECISIONS)
    for row, precision in zip(rows, PRECISIONS.values()):
        assert (precision.onnx or "no ONNX variant") in row and ("yes" if precision.amp else "no") in row
