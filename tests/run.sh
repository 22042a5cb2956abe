#!/usr/bin/env bash
# Install everything the template's tests need, then run all of them.
#
#   bash tests/run.sh            every test: render matrix, packages, Kafka, RabbitMQ, SQS
#   bash tests/run.sh -m "not package and not kafka and not rabbitmq and not sqs"   the fast tier only
#
# Needs Python 3.11+, a JDK 17+ and Maven (Kafka comes from Maven Central),
# rabbitmq-server (Debian's package: its nodes, not its service), Go (1.21+; it
# fetches the release actionlint needs itself) and shellcheck.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
# actionlint, built through Go's module proxy into .venv/bin unless it is there.
ACTIONLINT_VERSION=v1.7.12
if [[ "$(.venv/bin/actionlint -version 2>/dev/null | head -n 1)" != "$ACTIONLINT_VERSION" ]]; then
    GOBIN="$PWD/.venv/bin" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" \
        go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi
.venv/bin/python tests/kafka_server.py fetch >/dev/null   # Kafka jars for the runner generated packages carry; cached
.venv/bin/python tests/sqs_server.py fetch >/dev/null     # ElasticMQ jars, likewise

export PATH="$PWD/.venv/bin:$PATH"
# Two workers: each server backend's tests stay in one of them, in order, with
# its warm server (tests/conftest.py groups them); `-n 0` runs everything here.
exec pytest -n 2 --dist loadgroup "$@"
