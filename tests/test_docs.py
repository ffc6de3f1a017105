"""The docs render as written and every `gsam ...` line in them, and in every command's --help, parses with the
CLI's own parser: a renamed flag or a broken fence fails here, not in a newcomer's first hour."""

from __future__ import annotations

import re

import pytest
from support.docs_check import (
    ROOT,
    command_lines,
    help_commands,
    markdown_commands,
    markdown_files,
    parse_problem,
    render_problems,
)

from gsam.cli import cli

README_LIMIT = 12 * 1024


def _name(path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", markdown_files(), ids=_name)
def test_the_page_renders_with_balanced_fences_and_working_links(path):
    assert [str(p) for p in render_problems(path.read_text(), _name(path), path.parent)] == []


@pytest.mark.parametrize("path", markdown_files(), ids=_name)
def test_every_gsam_command_in_the_page_parses(path):
    commands = markdown_commands(path.read_text(), _name(path))
    problems = [f"{where}: {parse_problem(cli, command)}: {command}" for where, command in commands
                if parse_problem(cli, command)]
    assert problems == []


def test_every_help_example_parses():
    examples = help_commands(cli)
    assert len(examples) > 20  # the extraction finds the examples at all
    problems = [f"{where}: {parse_problem(cli, c)}: {c}" for where, c in examples if parse_problem(cli, c)]
    assert problems == []


def test_a_planted_unknown_flag_in_the_readme_fails_the_check():
    text = (ROOT / "README.md").read_text()
    commands = markdown_commands(text, "README.md")
    assert commands and all(parse_problem(cli, c) is None for _, c in commands)
    first = next(c for _, c in commands if c.startswith("gsam train"))
    planted = text.replace(first, first + " --learning-rte 0.1", 1)
    problems = [parse_problem(cli, c) for _, c in markdown_commands(planted, "README.md")]
    assert any(p and "--learning-rte" in p for p in problems), problems


def test_an_unknown_command_and_a_retired_flag_fail_the_check():
    assert "No such command" in parse_problem(cli, "gsam trian --data DATA --out RUN")
    assert "renamed" in parse_problem(cli, "gsam import-reference x.pth --num-classes 2 --out RUN")
    assert parse_problem(cli, "gsam eval RUN --data DATA [--split test]") is None


def test_a_broken_fence_a_swallowed_heading_and_a_missing_link_are_found(tmp_path):
    text = "# t\n\n```\ncode\n``` text after\n\n## Hidden\n"
    why = {p.why for p in render_problems(text, "x.md", tmp_path)}
    assert {"text after a closing fence", "heading inside a code block"} <= why
    (tmp_path / "here.md").write_text("x")
    links = render_problems("[a](here.md) [b](missing.md#part) [c](https://example.com/x.md)", "y.md", tmp_path)
    assert [(p.why, p.text) for p in links] == [("relative link to a missing file", "missing.md#part")]
    assert "code fence never closed" in {p.why for p in render_problems("```\nopen\n", "y.md", tmp_path)}


def test_command_lines_are_cut_where_the_shell_ends_them():
    text = "gsam serve --repo r &   # bg\nA: gsam eval RUN --data D | tee x\nx && gsam info vit_b \\\n  --size 64x64"
    assert command_lines(text) == ["gsam serve --repo r", "gsam eval RUN --data D", "gsam info vit_b --size 64x64"]


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < README_LIMIT
    first_screen = "\n".join(text.splitlines()[:40])
    assert "make demo" in first_screen and "make test" in first_screen and "## Install" in text
    assert text.index("## Install") < text.index("## The pipeline")


def test_every_renamed_flag_in_the_changelog_is_refused_with_its_hint():
    text = (ROOT / "CHANGELOG.md").read_text()
    section = text[text.index("## Renamed flags"):].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `gsam")]
    assert len(rows) >= 14
    for command, old in rows:
        for flag in old.replace("`", "").split(","):
            problem = parse_problem(cli, f"{command.strip(' `')} {flag.strip()} 1")
            assert problem and ("renamed" in problem or "removed" in problem or "replaced" in problem), (command, flag)


def test_every_test_errors_md_names_exists():
    text = (ROOT / "docs" / "errors.md").read_text()
    missing, current = [], None
    for file, name in re.findall(r"(test_\w+\.py)?::(test_\w+)", text):
        current = file or current
        source = ROOT / "tests" / (current or "")
        if not source.is_file() or not re.search(rf"def {name}\b", source.read_text()):
            missing.append(f"{current}::{name}")
    assert missing == []


def test_the_demos_next_steps_parse_and_point_at_a_readme_section():
    from gsam.demo import NEXT_STEPS

    commands = command_lines(NEXT_STEPS)
    assert len(commands) >= 3 and [c for c in commands if parse_problem(cli, c)] == []
    section = re.search(r'README, "([^"]+)"', NEXT_STEPS).group(1)
    assert f"## {section}" in (ROOT / "README.md").read_text()
