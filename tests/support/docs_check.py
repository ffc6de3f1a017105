"""Checks that the docs render and that every `gsam ...` line in them parses with the CLI itself.

Used by tests/test_docs.py. Markdown goes through markdown-it-py (CommonMark), so a fence that swallows a
heading or a link fails here the way it renders on GitHub; command lines go through click's own parser
(make_context, no command runs), so a renamed or misspelled option fails here before a reader meets it.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
# A `gsam` word that starts a shell command: at the line's start (after a prompt, a path such as .venv/bin/
# or a label such as "Example:"), after a shell separator, or as `python -m gsam`.
_GSAM = re.compile(r"(?:^\s*(?:\$\s+|[\w./-]*/|[A-Za-z][\w ()-]*:\s+)?|(?:&&|;|\|\||-m)\s+)(gsam\s+(?=[a-z-]))")
# Words that end the command on its line: comments, pipes, redirections, a background `&`, another command.
_END = re.compile(r"\s+(?:#|\|(?=\s)|>|&(?!&)|&&|;)|`")
_ELLIPSIS = {"...", "…", "\\"}


@dataclass(frozen=True)
class Problem:
    where: str
    text: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.why}: {self.text}"


def markdown_files() -> list[Path]:
    """The pages a user reads for commands, BENCHMARKS.md's reproducing commands among them (in today's spelling)."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "BENCHMARKS.md", ROOT / "triton_models" / "README.md",
            *sorted((ROOT / "docs").glob("*.md"))]


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def render_problems(text: str, where: str, folder: Path) -> list[Problem]:
    """Unbalanced fences, headings swallowed into code, and relative links to files that are not there."""
    problems: list[Problem] = []
    tokens = _parser().parse(text)
    lines = text.splitlines()
    for token in tokens:
        if token.type == "fence":
            start, end = token.map
            closed = end - 1 > start and lines[end - 1].strip().startswith(token.markup)
            if not closed:
                problems.append(Problem(f"{where}:{start + 1}", lines[start], "code fence never closed"))
            inner = lines[start + 1:end - 1 if closed else end]
            for offset, line in enumerate(inner):
                if re.match(r"#{1,6} \S", line) and not token.info.startswith(("bash", "sh", "yaml", "python")):
                    problems.append(Problem(f"{where}:{start + 2 + offset}", line, "heading inside a code block"))
                if re.match(r"\s*`{3,}\S*\s+\S", line):
                    problems.append(Problem(f"{where}:{start + 2 + offset}", line, "fence with text after it"))
    for line_no, line in enumerate(lines, 1):
        if re.match(r"\s*`{3,}[^`]*`{3,}\s*\S", line) or re.match(r"\s*```\s+\S", line):
            problems.append(Problem(f"{where}:{line_no}", line, "text after a closing fence"))
    for href, line_no in _links(tokens):
        target = href.split("#", 1)[0]
        if not target or re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue
        if not (folder / target).exists():
            problems.append(Problem(f"{where}:{line_no}", href, "relative link to a missing file"))
    return problems


def _links(tokens) -> list[tuple[str, int]]:
    found = []
    for token in tokens:
        for child in token.children or ():
            if child.type == "link_open":
                found.append((child.attrs.get("href", ""), (token.map or (0, 0))[0] + 1))
    return found


def markdown_commands(text: str, where: str) -> list[tuple[str, str]]:
    """Every `gsam ...` command in the code (fenced and inline) of a markdown text: [(where, command)].

    Inline code in a table column headed "message" quotes what gsam prints, not what a reader types."""
    found, headers, column, in_head = [], [], 0, False
    for token in _parser().parse(text):
        line_no = (token.map or (0, 0))[0] + 1
        if token.type in ("thead_open", "thead_close"):
            in_head = token.type == "thead_open"
            headers = [] if in_head else headers
        elif token.type == "tr_open":
            column = 0
        elif token.type in ("th_close", "td_close"):
            column += 1
        elif token.type in ("fence", "code_block") and token.info != "text":  # text: a listing, not commands
            found += [(f"{where}:{line_no}", c) for c in command_lines(token.content)]
        elif token.type == "inline" and in_head:
            headers.append(token.content)
        quoted = column < len(headers) and headers[column].startswith("message")
        for child in token.children or ():
            if child.type == "code_inline" and child.content.startswith("gsam ") and not quoted:
                found += [(f"{where}:{line_no}", c) for c in command_lines(child.content)]
    return found


def command_lines(text: str) -> list[str]:
    """`gsam ...` commands in text, continuation lines joined, each cut where the shell would end it."""
    text = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in text.splitlines():
        line = re.sub(r"^\s*\$\s+", "", line)
        for match in _GSAM.finditer(line):
            rest = line[match.start(1):]
            end = _END.search(rest, 4)
            commands.append(" ".join((rest[:end.start()] if end else rest).split()))
    return commands


def help_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Every `gsam ...` line in every command's help and epilog: [(command, line)]."""
    found = []
    for name, command in group.commands.items():
        here = (*path, name)
        for text in (command.help or "", command.epilog or ""):
            found += [("gsam " + " ".join(here) + " --help", c) for c in command_lines(text)]
        if isinstance(command, click.Group):
            found += help_commands(command, here)
    return found


def _words(command: str, ellipsis: str | None) -> list[str]:
    """The argv a reader would type: optional parts' brackets dropped, `a|b` alternatives as their first,
    an elided part (`...`, `…`) dropped or, when it stands for an option's value, written as `ellipsis`."""
    words = []
    for word in shlex.split(command.replace("…", " … ")):
        word = word.strip("[]")
        if word in _ELLIPSIS and ellipsis and words and words[-1].startswith("--"):
            word = ellipsis
        if not word or word in _ELLIPSIS:
            continue
        if "|" in word and "://" not in word:
            word = word.split("|", 1)[0]
        words.append(word)
    return words[1:]  # without `gsam`


def parse_problem(cli: click.Group, command: str) -> str | None:
    """None when click parses the command as its docs show it, else why not (unknown command or option)."""
    try:
        tries = [_words(command, None), _words(command, "X")]
    except ValueError as exc:
        return f"not a shell line ({exc})"
    with contextlib.redirect_stdout(io.StringIO()):  # `gsam --help`, `--version`: parsed, not shown
        problems = [_parse(cli, words) for words in tries]
    return None if None in problems else problems[0]


def _parse(cli: click.Group, words: list[str]) -> str | None:
    try:
        ctx = cli.make_context("gsam", list(words))
        group, args = cli, ctx.protected_args + ctx.args
        while isinstance(group, click.Group) and args:
            if re.fullmatch(r"[A-Z][A-Z_]*", args[0]):
                return None  # `gsam --debug CMD`: a placeholder for any command
            name, sub, args = group.resolve_command(ctx, args)
            ctx = sub.make_context(name, args, parent=ctx)
            group, args = sub, ctx.protected_args + ctx.args
    except click.exceptions.Exit:
        return None
    except click.NoSuchOption as exc:
        return exc.format_message()
    except click.MissingParameter:
        return None  # an example may leave out what its prose says
    except click.BadParameter as exc:
        return None if _placeholder(exc) else exc.format_message()
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            return None  # a group named alone, as in "gsam export"
        if words and words[-1].startswith("--") and "requires an argument" in exc.format_message():
            return None  # an option named at the end of a sentence, not used
        return exc.format_message()
    return None


def _placeholder(exc: click.BadParameter) -> bool:
    """A value written as a placeholder (DATA, RUN.pt, HxW) or a file the reader has not made yet."""
    message = exc.format_message()
    return "does not exist" in message or bool(re.search(r"'[A-Z][A-Z0-9_]*(\.[a-z]+)?'", message))
