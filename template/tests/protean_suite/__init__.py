"""Protean's own generic broker tests, run against this package's broker.

Protean's source distribution on PyPI ships the tests it runs against its own
brokers (`tests/adapters/broker/generic/`), written against any `BaseBroker`
and tagged with capability markers. `python -m tests.protean_suite` fetches the
source distribution of the installed Protean, unpacks those tests into a cache
and runs them with `plugin.py`, which builds this package's broker, runs each
test only when the broker declares its capability, and turns each test the
broker deliberately does not meet into a strict expected failure with its reason.
"""
