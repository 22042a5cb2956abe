"""Migration: keep the files the template stops generating if the author changed them.

    keep_edited.py PATH [PATH ...] --template {{ _copier_conf.src_path }}
                                   --from-ref {{ _version_from }}

Copier deletes every file the new version no longer generates, including one the
author edited: their work is then only in git history. Run this at the `after`
stage with the paths the release stops generating: each PATH whose committed
content differs from what the old version generated is put back from the last
commit, and an untouched PATH stays deleted. The old render of a rendered
(`.jinja`) file would need Copier to reproduce, so such a file is kept whenever
the package has it: deleting it is then the author's call.

Idempotent: a PATH that exists is left alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _migration import committed, fail, git, pristine, say, template_arguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="PATH")
    template_arguments(parser)
    args = parser.parse_args()

    for path in args.paths:
        mine = committed(path)
        if Path(path).exists() or mine is None:
            continue
        base = pristine(args.template, args.from_ref, args.subdirectory, path)
        if base == mine:
            say(f"{path}: the template no longer ships it, you had not changed it")
            continue
        restored = git("checkout", "HEAD", "--", f"./{path}")
        if restored.returncode:
            fail(f"could not restore {path}: {restored.stderr.decode()}")
        reason = "you changed it" if base is not None else "you may have changed it"
        say(
            f"kept {path}: the template no longer ships it, but {reason}; "
            "delete it when you no longer need it"
        )


if __name__ == "__main__":
    main()
