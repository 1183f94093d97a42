"""Every shell command the README and docs/ show runs as written on a clone: each `seaice` stage,
sub-command and option exists (read from the stage's own --help), each make target, script, notebook,
config and experiment file it names is in the repository, and nothing is installed from a registry
the project is not on."""

import contextlib
import io
import re
import shlex
from functools import cache
from pathlib import Path

import pytest

from seaice_lib.cli import STAGES, main

ROOT = Path(__file__).parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "slurm" / "README.md"]
SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S)
GLOBAL_FLAGS = {"--debug": 0, "-q": 0, "--quiet": 0, "-v": 0, "--verbose": 0, "--log-file": 1}
REPO_FOLDERS = ("configs/", "experiments/", "notebooks/", "slurm/", "benchmarks/")
OTHER_PROGRAMS = {"source", "set", "cat", "scancel", "export", "cd", "mkdir"}  # the shell's and SLURM's own


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, words) of every command in the documents' bash blocks: continuation lines joined,
    comments, heredoc bodies and optional ``[...]`` parts dropped, pipelines and lists split."""
    found = []
    for doc in DOCUMENTS:
        for block in SHELL_BLOCK.findall(doc.read_text()):
            lines, heredoc = [], None
            for line in block.replace("\\\n", " ").splitlines():
                if heredoc is not None:
                    heredoc = None if line.strip() == heredoc else heredoc
                    continue
                if match := re.search(r"<<\s*'?(\w+)'?", line):
                    heredoc = match.group(1)
                lines.append(line)
            for line in lines:
                lexer = shlex.shlex(re.sub(r"\[[^\]]*\]", " ", line), posix=True, punctuation_chars=True)
                lexer.whitespace_split, lexer.commenters = True, "#"
                words: list[str] = []
                tokens = [*lexer, ";"]
                for i, token in enumerate(tokens):
                    if token in ("<<", ">", ">>", "<") or (i and tokens[i - 1] in ("<<", ">", ">>", "<")):
                        continue  # a redirection and its file (or heredoc word)
                    if token in (";", "&&", "||", "|", "&"):
                        if words:
                            found.append((f"{doc.relative_to(ROOT)}: {line.strip()[:80]}", words))
                        words = []
                    else:
                        words.append(token)
    return found


COMMANDS = documented_commands()


@cache
def help_text(*command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*command, "--help"])
    return out.getvalue()


def seaice_words(words: list[str]) -> list[str] | None:
    """The arguments after the program when ``words`` run the ``seaice`` command, else None."""
    for i, word in enumerate(words):
        if Path(word).name == "seaice":
            return words[i + 1:]
        if word == "-m" and i + 1 < len(words) and words[i + 1] == "seaice_lib":
            return words[i + 2:]
    return None


def check_seaice(args: list[str]) -> None:
    while args and args[0] in GLOBAL_FLAGS:
        args = args[1 + GLOBAL_FLAGS[args[0]]:]
    assert args and args[0] in STAGES, f"no stage {args[:1]}"
    command = [args[0]]
    if len(args) > 1 and not args[1].startswith("-") and re.match(r"[a-z][\w-]*$", args[1]):
        try:  # a sub-command answers --help with its own usage line
            if help_text(args[0], args[1]).startswith(f"usage: seaice {args[0]} {args[1]}"):
                command.append(args[1])
        except Exception:  # an argument, not a sub-command (its --help may not even parse)
            pass
    assert len(command) == 2 or not re.match(r"usage: seaice \S+ \[-h\] (COMMAND|\{[\w,-]+\}) \.\.\.", help_text(args[0])), \
        f"`seaice {args[0]}` needs one of its sub-commands, not {args[1:2]}"
    text = help_text(*command)
    for word in args[len(command):]:
        if word.startswith("-") and len(word) > 1 and not word.startswith("--set="):
            option = word.split("=", 1)[0]
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), \
                f"`seaice {' '.join(command)}` has no option {option}"


def check_words(words: list[str]) -> None:
    for word in words:  # files of the repository it names
        if word.startswith(REPO_FOLDERS) and not any(c in word for c in "*{$"):
            assert (ROOT / word).exists(), f"{word} is not in the repository"
    if (args := seaice_words(words)) is not None:
        return check_seaice(args)
    program = words[0]
    if "=" in program:  # VAR=value command ...
        return check_words(words[1:])
    if program == "make":
        targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
        assert set(w for w in words[1:] if not w.startswith("-")) <= targets, f"no make target in {words[1:]}"
    elif program.startswith("slurm/"):
        assert (ROOT / program).is_file() and (ROOT / program).stat().st_mode & 0o111, f"{program} is no script"
    elif program == "pip":
        sources = [w for w in words[2:] if not w.startswith("-")]
        assert all(w.startswith(("./", "/", ".")) or w.endswith(".whl") for w in sources), \
            f"pip installs {sources} from a registry; the package is on none (install from the clone)"
    elif program in ("python", ".venv/bin/python") and words[1:3] == ["-m", "benchmarks"]:
        names = {p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")}
        assert set(words[3:4]) <= names, f"no benchmark {words[3:4]}"
    else:
        assert program in OTHER_PROGRAMS, (f"{program}: run notebooks with `seaice notebook` and jobs with "
                                           "`slurm/sbatch.sh`, as everywhere else")


def test_the_documents_show_commands():
    assert len(COMMANDS) > 40 and sum(seaice_words(w) is not None for _, w in COMMANDS) > 30


@pytest.mark.parametrize("where, words", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_documented_command_runs_as_written(where, words):
    check_words(words)
