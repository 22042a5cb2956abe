"""Pytest plugin for running a generated conformance suite against Protean's own
`inline` or `redis` broker (`PROTEAN_REFERENCE_PROVIDER`, and for redis
`PROTEAN_REFERENCE_REDIS_URI`).

It swaps the generated `tests.conftest.default_settings` (which the
`broker_settings` fixture returns) for the reference provider's table before any
test module imports it, and turns each `beyond_protean` / `protean_defect`
marker that names the provider (and, with
`before="0.18"`, the installed Protean release) into a strict expected failure:
such a test must fail there, and every other test must pass.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from typing import Any

import pytest
from packaging.version import Version
from protean.port.broker import BaseBroker

PROTEAN = Version(version("protean"))

if not hasattr(BaseBroker, "close"):
    # Protean 0.15's brokers have no close(); the generated fixtures call it
    # on their own broker, which always has one.
    BaseBroker.close = lambda self: None  # type: ignore[attr-defined]

PROVIDER = os.environ["PROTEAN_REFERENCE_PROVIDER"]
MARKERS = ("beyond_protean", "protean_defect")


def reference_settings() -> dict[str, Any]:
    # The generated suite's own timing: short retries, two before the DLQ.
    settings: dict[str, Any] = {
        "provider": PROVIDER,
        "retry_delay": 0.01,
        "backoff_multiplier": 1.0,
        "max_retries": 2,
    }
    if PROVIDER == "redis":
        settings["URI"] = os.environ["PROTEAN_REFERENCE_REDIS_URI"]
    return settings


def pytest_plugin_registered(plugin: object) -> None:
    if getattr(plugin, "__name__", None) == "tests.conftest":
        plugin.default_settings = reference_settings  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in MARKERS:
            for marker in item.iter_markers(name):
                before = marker.kwargs.get("before")
                since = marker.kwargs.get("since")
                if (
                    PROVIDER in marker.args
                    and (before is None or Version(before) > PROTEAN)
                    and (since is None or Version(since) <= PROTEAN)
                ):
                    reason = f"{name}: {marker.kwargs['reason']}"
                    item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
