"""Migration: take the author's edits along when the template moves a file.

    move_file.py OLD NEW --template {{ _copier_conf.src_path }}
                         --from-ref {{ _version_from }}

Copier cannot follow a move: it deletes OLD, which the new version no longer
generates, edits and all, and writes NEW as the template has it. Run this at the
`after` stage: when the package's last commit holds an OLD the author changed,
their changes are merged into NEW, and a conflict is marked inline as Copier marks
its own. The deletion of OLD is staged, as `git mv` would.

The merge base is OLD as the old version generated it, read from the template's
history when the template ships the file verbatim. A rendered (`.jinja`) file
would need Copier to reproduce, so NEW as just generated stands in for it: exact
when the release moves the file without changing it, which is what README.md here
asks of a release that moves one.

Idempotent: once OLD has left git's index there is nothing more to do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _migration import committed, git, merge, pristine, say, template_arguments, tracked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="where the old version generated the file")
    parser.add_argument("new", help="where the new version generates it")
    template_arguments(parser)
    args = parser.parse_args()
    old, new = Path(args.old), Path(args.new)

    mine = committed(args.old)
    if mine is None or not tracked(args.old):
        say(f"{old} is not in the package: nothing to move")
        return
    if old.exists():
        say(f"{old} is still there: left as it is, nothing moved to {new}")
        return
    if not new.is_file():
        say(f"the template generated no {new}: {old} stays deleted")
        return

    generated = new.read_bytes()
    base = pristine(args.template, args.from_ref, args.subdirectory, args.old)
    if base is None:
        base = generated
    if mine == base:
        say(f"{old} moved to {new} (you had not changed it)")
    else:
        new.write_bytes(mine)
        conflicts = merge(new, base, generated)
        if conflicts:
            say(
                f"{old} moved to {new} with your changes; {conflicts} conflict(s) "
                f"are marked in {new}: resolve them before committing"
            )
        else:
            say(f"{old} moved to {new} with your changes")
    git("rm", "--cached", "--quiet", "--", args.old)


if __name__ == "__main__":
    main()
