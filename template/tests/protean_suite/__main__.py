"""`python -m tests.protean_suite [pytest arguments]`: Protean's generic broker
tests against this package's broker, for the Protean release installed here.

The tests come from Protean's source distribution on PyPI, fetched with pip
once per release into ``PROTEAN_SUITE_CACHE`` (default: the user's cache
folder); ``PROTEAN_SDIST`` names a local ``protean-<version>.tar.gz`` instead.
Nothing of Protean's is copied into this repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

# Where the sdist keeps the tests, and what `plugin.py` calls the package.
GENERIC = "tests/adapters/broker/generic/"
ELEMENTS = "tests/adapters/broker/elements.py"
PACKAGE = "protean_broker_tests"


def cache_root() -> Path:
    configured = os.environ.get("PROTEAN_SUITE_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "protean-broker-tests"


def fetch_sdist(release: str, folder: Path) -> Path:
    """Protean's source distribution of ``release``, downloaded once."""
    local = os.environ.get("PROTEAN_SDIST")
    if local:
        return Path(local)
    sdist = folder / f"protean-{release}.tar.gz"
    if not sdist.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet"),
                *("--no-deps", "--no-binary", ":all:", f"protean=={release}"),
                *("--dest", str(folder)),
            ],
            check=True,
        )
    return sdist


def unpack(sdist: Path, destination: Path) -> bool:
    """Unpack the generic broker tests as package `PACKAGE` under
    ``destination``; False when this release's sdist does not ship them."""
    package = destination / PACKAGE
    if (package / "generic").is_dir():
        configure(package)
        return True
    with tarfile.open(sdist) as archive:
        wanted = {}
        for member in archive.getmembers():
            _, _, inside = member.name.partition("/")  # drop "protean-X.Y.Z/"
            if member.isfile() and inside.endswith(".py"):
                if inside.startswith(GENERIC) and "/" not in inside[len(GENERIC) :]:
                    wanted[member] = package / "generic" / inside[len(GENERIC) :]
                elif inside == ELEMENTS:
                    wanted[member] = package / "elements.py"
        if not any(path.parent.name == "generic" for path in wanted.values()):
            return False
        staging = destination / f"{PACKAGE}.partial"
        for member, path in wanted.items():
            target = staging / path.relative_to(package)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
    (staging / "__init__.py").write_text("")
    (staging / "generic" / "__init__.py").touch()
    # Its own configuration, so no pytest settings above the cache apply.
    (destination / "pytest.ini").write_text("[pytest]\n")
    staging.rename(package)
    configure(package)
    return True


def configure(package: Path) -> None:
    """Give the tests that build a `Domain` of their own the configuration file
    Protean looks for beside them (up to two folders up), which it warns about
    missing: an empty one, so they run on Protean's defaults as before."""
    config = package / "domain.toml"
    if not config.exists():
        config.write_text(
            "# Protean's defaults: the generic tests configure their domains in code.\n"
        )


def main(arguments: list[str]) -> int:
    release = version("protean")
    folder = cache_root() / f"protean-{release}"
    if not unpack(fetch_sdist(release, folder), folder):
        print(
            f"Protean {release}'s source distribution ships no generic broker "
            f"tests (they start with 0.16): nothing to run."
        )
        return 0
    return int(
        pytest.main(
            [
                *("-p", "tests.protean_suite.plugin", "-p", "no:cacheprovider"),
                *("--rootdir", str(folder), "-c", str(folder / "pytest.ini")),
                str(folder / PACKAGE / "generic"),
                *arguments,
            ]
        )
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
