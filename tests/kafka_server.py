"""The Kafka runner generated Kafka packages carry, loaded from the template.

There is one runner: ``template/tests/{% if backend == 'kafka' %}kafka{% endif %}/
kafka_server.py`` (a plain file Copier copies as-is, next to its ``pom.xml``).
Its folder name is a Jinja expression, not an importable package, so this module
loads it by path and registers it under its own name; the template's tests, the
benchmark and ``tests/run.sh`` all use it through here. From a shell::

    .venv/bin/python tests/kafka_server.py start   # or fetch, status, stop
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER = (
    REPO_ROOT
    / "template"
    / "tests"
    / "{% if backend == 'kafka' %}kafka{% endif %}"
    / "kafka_server.py"
)
MODULE_NAME = "protean_template_kafka_runner"


# Run as a script (`python tests/kafka_server.py start`), this folder, not the
# repository, is on the path, and the runner imports `tests.local_servers`.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def load_runner() -> ModuleType:
    """Import the template's runner file once per interpreter."""
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME]
    spec = importlib.util.spec_from_file_location(MODULE_NAME, RUNNER)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the Kafka runner from {RUNNER}")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: `from __future__ import annotations` types and
    # anything that looks the module up by name need to find it.
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


runner = load_runner()
HOST: str = runner.HOST
POM: Path = runner.POM
TEST_OVERRIDES: dict[str, str] = runner.TEST_OVERRIDES
KafkaCluster = runner.KafkaCluster
KafkaHarnessError = runner.KafkaHarnessError
KafkaServer = runner.KafkaServer
api_versions_ok = runner.api_versions_ok
ensure_artifacts = runner.ensure_artifacts
kafka_version = runner.kafka_version
missing_tools = runner.missing_tools

if __name__ == "__main__":
    sys.exit(runner.main())
