"""Migration: carry an answer over to the question's new key.

    rename_answer.py OLD NEW [--answers-file .copier-answers.yml]

Run it at the `before` stage: Copier then reads the renamed answer when it asks the
new version's questions, so the author's choice is kept instead of being replaced by
the new question's default. Only the answers file changes.

Idempotent: without an `OLD` key there is nothing to do. When the file already has
`NEW`, that answer wins and `OLD` is dropped.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from _migration import fail, say


def rename(text: str, old: str, new: str) -> str:
    """The answers file's text with top-level key `old` renamed to `new`.

    Copier writes the file with `to_nice_yaml`: each answer starts at column 0 and
    anything that continues it (list items, block scalars) starts with a space or
    "-". Line-based editing keeps every other answer byte for byte.
    """
    lines = text.splitlines(keepends=True)

    def starts(key: str, line: str) -> bool:
        return re.match(rf"""(['"]?){re.escape(key)}\1:(\s|$)""", line) is not None

    at = next((i for i, line in enumerate(lines) if starts(old, line)), None)
    if at is None:
        return text
    if any(starts(new, line) for line in lines):
        end = at + 1
        while end < len(lines) and lines[end].startswith((" ", "\t", "-")):
            end += 1
        return "".join(lines[:at] + lines[end:])
    value = lines[at].split(":", 1)[1]
    lines[at] = f"{new}:{value}"
    return "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument(
        "--answers-file",
        type=Path,
        default=Path(".copier-answers.yml"),
        help="{{ _copier_conf.answers_file }}",
    )
    args = parser.parse_args()
    for key in (args.old, args.new):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            fail(f"{key!r} is not an answer key")
    if not args.answers_file.is_file():
        fail(f"no answers file at {args.answers_file}")
    # Bytes in, bytes out: line endings stay as Copier wrote them.
    text = args.answers_file.read_bytes().decode("utf-8")
    renamed = rename(text, args.old, args.new)
    if renamed == text:
        say(f"no `{args.old}` answer in {args.answers_file}: nothing to rename")
        return
    args.answers_file.write_bytes(renamed.encode("utf-8"))
    say(f"answer `{args.old}` is now `{args.new}` in {args.answers_file}")


if __name__ == "__main__":
    main()
