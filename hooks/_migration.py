"""What the migration scripts in this folder share. Standard library only.

Copier runs a migration with the Python that runs Copier itself, in the root of the
package being updated (see README.md here). A script reads the package's committed
state with git, changes the working tree, says what it did on stdout, and leaves
the rest to the author's review: it never commits.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

# The labels Copier puts on the conflict markers it writes, so a conflict left by a
# migration reads like one left by Copier's own merge.
MARKER_LABELS = ("before updating", "last update", "after updating")


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)


def committed(path: str) -> bytes | None:
    """`path` as the package's last commit holds it, or None if it holds no such file.

    `HEAD:./path` is relative to the current directory, so this also works when the
    package is a folder of a larger repository.
    """
    result = git("show", f"HEAD:./{path}")
    return result.stdout if result.returncode == 0 else None


def tracked(path: str) -> bool:
    """Whether git's index still lists `path`."""
    return git("ls-files", "--error-unmatch", "--", path).returncode == 0


def pristine(template: Path, ref: str, subdirectory: str, path: str) -> bytes | None:
    """What template version `ref` generated at `path`, when it can be known.

    A file the template ships verbatim (no `.jinja` suffix) is its own render, so
    the template's history holds it. A rendered file depends on the answers and
    would need Copier to reproduce; None then, and the caller takes the safe side.
    """
    source = f"{subdirectory.strip('/')}/{path}" if subdirectory else path
    result = git("show", f"{ref}:{source}", cwd=template)
    return result.stdout if result.returncode == 0 else None


def merge(current: Path, base: bytes, other: bytes) -> int:
    """Three-way merge `other`'s changes from `base` into `current`, in place.

    Returns the number of conflicts, which `git merge-file` leaves marked inline.
    """
    with tempfile.TemporaryDirectory() as scratch:
        base_file = Path(scratch, "base")
        other_file = Path(scratch, "other")
        base_file.write_bytes(base)
        other_file.write_bytes(other)
        labels = [arg for label in MARKER_LABELS for arg in ("-L", label)]
        result = git(
            "merge-file", *labels, "--", str(current), str(base_file), str(other_file)
        )
    if result.returncode < 0 or result.returncode > 127:
        fail(f"git merge-file failed on {current}: {result.stderr.decode()}")
    return result.returncode


def template_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the scripts that need the old render find it."""
    parser.add_argument(
        "--template",
        type=Path,
        required=True,
        help="the template's checkout: {{ _copier_conf.src_path }}",
    )
    parser.add_argument(
        "--from-ref",
        required=True,
        help="the version being updated from: {{ _version_from }}",
    )
    parser.add_argument(
        "--subdirectory",
        default="template",
        help="the template's _subdirectory (default: template)",
    )


def say(message: str) -> None:
    print(f"migration: {message}", flush=True)


def fail(message: str) -> None:
    print(f"migration failed: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)
