"""What the server runners of generated packages share, loaded from the template.

The one copy is ``template/tests/{% if starts_local_servers %}local_servers.py{%
endif %}``; generated packages get it as ``tests/local_servers.py``, where their
runners import it from. Here the runners are loaded from the template by path
(``tests/kafka_server.py``, ``tests/rabbitmq_server.py``) and import it under
the same name, so this module puts the template's file in its own place.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

SHARED = (
    Path(__file__).resolve().parents[1]
    / "template"
    / "tests"
    / "{% if starts_local_servers %}local_servers.py{% endif %}"
)

# Named for Copier, the file does not end in .py: its loader is given.
_loader = importlib.machinery.SourceFileLoader(__name__, str(SHARED))
_spec = importlib.util.spec_from_file_location(__name__, SHARED, loader=_loader)
if _spec is None or _spec.loader is None:
    raise ImportError(f"cannot load {SHARED}")
_module = importlib.util.module_from_spec(_spec)
sys.modules[__name__] = _module  # `from tests.local_servers import X` finds it
_spec.loader.exec_module(_module)
