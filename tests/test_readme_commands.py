"""Every `copier` command the two READMEs show runs as written, on a clone of the
template with its release tags and on one without (a fork, `--no-tags`).

Commands run through a pseudo-terminal, so one that asks a question is answered
the way a person would: a broker name where one is needed, Enter elsewhere.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, git, shell_blocks
from tests.terminal import Terminal, answer_prompts
from tests.test_releases import (  # noqa: F401 (template_history is a fixture)
    commit,
    tag_releases,
    template_history,
)

pytestmark = pytest.mark.terminal

INLINE = re.compile(r"`(copier [^`]+)`")
CLONE = "protean-broker-template"  # the name the quick start clones into


def copier_commands(readme: str) -> list[str]:
    """`copier` lines of the shell blocks and inline commands, comments removed."""
    commands = []
    for block in shell_blocks(readme):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("copier "):
                commands.append(re.sub(r"\s+#.*$", "", line).strip())
    # Inline, a command has options; `copier update` alone names the command.
    commands += [span for span in INLINE.findall(readme) if " --" in span]
    return [" ".join(command.split()) for command in commands]


def run_line(line: str, cwd: Path) -> Terminal:
    terminal = Terminal(["-c", line], cwd=cwd, program="bash")
    answer_prompts(terminal, {"broker_name": "acme"})
    status = terminal.finish()
    assert status == 0, f"{line}\n{terminal.text()}"
    return terminal


@pytest.fixture(params=["tagged", "untagged"])
def clone_dir(
    request: pytest.FixtureRequest,
    template_history: Path,  # noqa: F811
    tmp_path: Path,
) -> Path:
    """A folder holding a clone of the template, as the quick start makes it."""
    if request.param == "tagged":
        assert tag_releases(template_history).returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    git(work, "clone", "-q", "--no-tags", str(template_history), CLONE)
    if request.param == "tagged":
        git(work / CLONE, "fetch", "-q", "--tags")
    return work


def test_the_readmes_name_the_commands_people_run() -> None:
    commands = copier_commands((REPO_ROOT / "README.md").read_text())
    assert sum(c.startswith("copier copy") for c in commands) >= 3
    assert "copier update --skip-answered" in commands


def test_every_copier_command_of_both_readmes_runs_as_written(
    clone_dir: Path, tmp_path: Path
) -> None:
    commands = copier_commands((REPO_ROOT / "README.md").read_text())
    copies = [c for c in commands if c.startswith("copier copy")]
    for number, line in enumerate(copies):
        work = tmp_path / f"copy-{number}"
        shutil.copytree(clone_dir, work, symlinks=True)
        run_line(line, work)
        [package] = [p for p in work.iterdir() if p.name != CLONE]
        assert (package / ".copier-answers.yml").is_file(), line

    # The package the updates run in: the quick start's, made from the oldest
    # release where there are tags, so an update has something to bring.
    package = clone_dir / "protean-acme-broker"
    tagged = bool(git(clone_dir / CLONE, "tag", "--list"))
    oldest = ["--vcs-ref", "v0.1.0"] if tagged else []
    run_line(
        f"copier copy --defaults --data broker_name=acme {' '.join(oldest)} "
        f'"$PWD/{CLONE}" protean-acme-broker',
        clone_dir,
    )
    git(package, "init", "-q", "-b", "main")
    commit(package, "generated")
    generated = copier_commands((package / "README.md").read_text())
    assert generated, "the generated README shows no copier command"
    updates = [c for c in commands + generated if not c.startswith("copier copy")]
    behind = tagged  # until the first update, the package is on v0.1.0
    for line in updates:
        terminal = run_line(line, package)
        if line == "copier check-update" and behind:
            assert "latest version is 0.2.0" in terminal.text()
        behind = behind and not line.startswith("copier update")
        commit(package, line)
    answers = (package / ".copier-answers.yml").read_text()
    assert ("_commit: v0.2.0" in answers) == tagged, answers
