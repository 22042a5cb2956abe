"""Tag every release that CHANGELOG.md names, on the commit that released it.

A release is made by one commit on main that moves the "Unreleased" entries
under a new heading `## [X.Y.Z]`. That commit gets the tag `vX.Y.Z`, which is
what Copier reads as the template's version. The release workflow runs this on
every push to main; on a clone without tags, run it yourself:

    python3 .ci/tag_releases.py          # create the missing tags
    python3 .ci/tag_releases.py --check  # only say what is missing or wrong

Existing tags are never moved: a tag on another commit than the one CHANGELOG.md
gives stops the script with an error.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

HEADING = re.compile(r"^## \[(\d+\.\d+\.\d+)\]", re.MULTILINE)


class ReleaseError(RuntimeError):
    """CHANGELOG.md and the repository's tags disagree."""


def git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def versions(changelog: str) -> list[str]:
    """The released versions, newest first, as CHANGELOG.md lists them."""
    found = HEADING.findall(changelog)
    keys = [tuple(int(part) for part in version.split(".")) for version in found]
    if keys != sorted(keys, reverse=True) or len(set(keys)) != len(keys):
        raise ReleaseError(
            f"CHANGELOG.md lists {', '.join(found)}: versions must be unique, "
            "newest first"
        )
    return found


def release_commit(root: Path, version: str) -> str:
    """The commit that first wrote the version's heading into CHANGELOG.md."""
    commits = git(
        root,
        "log",
        "--reverse",
        "--format=%H",
        "-S",
        f"## [{version}]",
        "--",
        "CHANGELOG.md",
    ).split()
    if not commits:
        raise ReleaseError(
            f"no commit writes '## [{version}]' into CHANGELOG.md "
            "(is this a shallow clone? fetch the whole history)"
        )
    return commits[0]


def plan(root: Path) -> list[tuple[str, str, bool]]:
    """(tag, commit, already there) for every release, newest first."""
    changelog = (root / "CHANGELOG.md").read_text(encoding="utf-8")
    planned = []
    for version in versions(changelog):
        tag, commit = f"v{version}", release_commit(root, version)
        existing = git(root, "tag", "--list", tag)
        if existing:
            tagged = git(root, "rev-list", "-n", "1", tag)
            if tagged != commit:
                raise ReleaseError(
                    f"{tag} is on {tagged[:12]}, but CHANGELOG.md released it in "
                    f"{commit[:12]}; tags are never moved: fix the tag by hand"
                )
        planned.append((tag, commit, bool(existing)))
    return planned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if a tag is missing",
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository")
    options = parser.parse_args(argv)
    try:
        planned = plan(options.root)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    missing = [(tag, commit) for tag, commit, there in planned if not there]
    for tag, commit, there in planned:
        state = "tagged" if there else "missing" if options.check else "created"
        if not there and not options.check:
            git(options.root, "tag", tag, commit)
        print(f"{tag}  {commit[:12]}  {state}")
    return 1 if options.check and missing else 0


if __name__ == "__main__":
    sys.exit(main())
