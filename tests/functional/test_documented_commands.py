"""The commands the docs give (README.md, docs/*.md) of the benchmarks and the deploy and
operations steps exist and take the options they are given there: each one's `--help`, run as
the docs write it (`python -m bench.X`, `python bench/X.py`, `python -m infra.X`). Nothing
else of them is run."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The command, then its options (`--name`, `--name value`, `[--name value]`) up to anything else.
OPTION = r"[ \t]+\[?--[\w-]+(?:[ \t]+[^\s\]`#-][^\s\]`]*)?\]?"
COMMAND = re.compile(rf"python (-m (?:bench|infra)\.\w+|bench/\w+\.py)((?:{OPTION})*)")


def documented_commands() -> dict[tuple[str, ...], set[str]]:
    """(how it is run) -> the options the docs give it, over every doc."""
    commands: dict[tuple[str, ...], set[str]] = {}
    for doc in DOCS:
        for how, options in COMMAND.findall(doc.read_text()):
            run = tuple(how.split())
            commands.setdefault(run, set()).update(re.findall(r"--[\w-]+", options))
    return commands


COMMANDS = documented_commands()


def test_the_docs_give_the_benchmarks_and_deploy_steps_commands():
    assert ("-m", "bench.stream") in COMMANDS and ("bench/limits.py",) in COMMANDS, COMMANDS
    assert "--timeline" in COMMANDS["-m", "bench.stream"]
    assert {"--stage", "--month", "--by", "--format"} <= COMMANDS["-m", "infra.usage_report"]


@pytest.mark.parametrize("run", sorted(COMMANDS), ids=" ".join)
def test_each_documented_command_takes_its_documented_options(run):
    done = subprocess.run([sys.executable, *run, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, f"python {' '.join(run)} --help failed:\n{done.stderr[-2000:]}"
    unknown = sorted(option for option in COMMANDS[run] if not re.search(rf"{option}(?![\w-])", done.stdout))
    assert not unknown, f"the docs give python {' '.join(run)} options it does not take: {unknown}"
