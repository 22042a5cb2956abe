"""Markers that record where this suite asks more than Protean's own brokers give.

The template runs this suite, as generated, against Protean's `inline` and
`redis` brokers too, on every Protean release it supports. A test that one of
them does not pass carries one of these markers, naming the broker, the reason
and, with `before=`, the first release that passes; for your broker they change
nothing: every test must pass.
"""

from __future__ import annotations

from importlib.util import find_spec

import pytest

SERVER_EXTRA = ("fastapi", "uvicorn", "jinja2")
"""What Protean's Observatory imports (`pip install "protean[server]"`)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "beyond_protean(*providers, reason, before=None, since=None): the test "
        "checks more than Protean's contract, which the named Protean brokers "
        "(before or since that release) do not do; the reason says why the "
        "suite asks for it",
    )
    config.addinivalue_line(
        "markers",
        "protean_defect(*providers, reason, before=None): the named Protean "
        "brokers (before that release) fail the test because of the upstream "
        "defect the reason names",
    )
    config.addinivalue_line(
        "markers",
        "protean_server: the test drives Protean's Observatory, which needs "
        "protean[server]; deselected when it is not installed",
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if all(find_spec(module) for module in SERVER_EXTRA):
        return
    unable = [item for item in items if item.get_closest_marker("protean_server")]
    if unable:
        config.hook.pytest_deselected(items=unable)
        items[:] = [item for item in items if item not in unable]
