"""The RabbitMQ runner generated RabbitMQ packages carry, loaded from the template.

There is one runner: ``template/tests/{% if backend == 'rabbitmq' %}rabbitmq{% endif %}/
rabbitmq_server.py`` (a plain file Copier copies as-is). Its folder name is a
Jinja expression, not an importable package, so this module loads it by path
and registers it under its own name; the template's tests use it through here.
From a shell::

    .venv/bin/python tests/rabbitmq_server.py start   # or status, stop
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
    / "{% if backend == 'rabbitmq' %}rabbitmq{% endif %}"
    / "rabbitmq_server.py"
)
MODULE_NAME = "protean_template_rabbitmq_runner"


# Run as a script (`python tests/rabbitmq_server.py start`), this folder, not the
# repository, is on the path, and the runner imports `tests.local_servers`.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def load_runner() -> ModuleType:
    """Import the template's runner file once per interpreter."""
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME]
    spec = importlib.util.spec_from_file_location(MODULE_NAME, RUNNER)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the RabbitMQ runner from {RUNNER}")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: `from __future__ import annotations` types and
    # anything that looks the module up by name need to find it.
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


runner = load_runner()
HOST: str = runner.HOST
Epmd = runner.Epmd
RabbitMQCluster = runner.RabbitMQCluster
RabbitMQHarnessError = runner.RabbitMQHarnessError
RabbitMQNode = runner.RabbitMQNode
amqp_ready = runner.amqp_ready
group_alive = runner.group_alive
missing_tools = runner.missing_tools

if __name__ == "__main__":
    sys.exit(runner.main())
