"""Markers that record where this suite asks more than Protean's own brokers give.

The template runs this suite, as generated, against Protean's `inline` and
`redis` brokers too. A test that one of them does not pass carries one of these
markers, naming the broker and the reason; for your broker they change nothing:
every test must pass.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "beyond_protean(*providers, reason): the test checks more than Protean's "
        "contract, which the named Protean brokers do not do; the reason says why "
        "the suite asks for it",
    )
    config.addinivalue_line(
        "markers",
        "protean_defect(*providers, reason): the named Protean brokers fail the "
        "test because of the upstream defect the reason names",
    )
