"""Loads the server runners generated packages carry from the template.

There is one copy of each: ``template/tests/{% if backend == 'kafka' %}kafka{%
endif %}/kafka_server.py`` and the like, which import their shared core as
``tests.local_servers`` (``template/tests/{% if starts_local_servers %}
local_servers.py{% endif %}``). Those folder and file names are Jinja
expressions, not importable modules, so this module loads the files by path:
``tests/local_servers.py`` puts the core in its own place, and
``tests/kafka_server.py`` and ``tests/rabbitmq_server.py`` stand in for the
runners, as modules and as scripts::

    .venv/bin/python tests/kafka_server.py start   # or fetch, status, stop
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_TESTS = REPO_ROOT / "template" / "tests"
SHARED = TEMPLATE_TESTS / "{% if starts_local_servers %}local_servers.py{% endif %}"


def runner_path(backend: str) -> Path:
    """The file a ``backend`` package gets as tests/<backend>/<backend>_server.py."""
    folder = f"{{% if backend == '{backend}' %}}{backend}{{% endif %}}"
    return TEMPLATE_TESTS / folder / f"{backend}_server.py"


def load_file(name: str, path: Path) -> ModuleType:
    """Run the Python file at ``path`` as module ``name`` (its name need not end
    in .py), registered before it runs so that it can find itself by name."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def load_runner(backend: str) -> ModuleType:
    """The backend's runner, loaded once per interpreter."""
    name = f"protean_template_{backend}_runner"
    return sys.modules.get(name) or load_file(name, runner_path(backend))


def stand_in(name: str, backend: str) -> None:
    """Make module ``name`` the backend's runner, or run its CLI when ``name``
    is ``__main__`` (the module was run as a script)."""
    runner = load_runner(backend)
    if name == "__main__":
        sys.exit(runner.main())
    sys.modules[name] = runner
