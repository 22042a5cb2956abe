"""The node-runner core generated packages carry, loaded from the template.

Packages get ``template/tests/{% if starts_local_servers %}local_servers.py{%
endif %}`` as ``tests/local_servers.py``, where their runners import it from;
the runners loaded from the template (``tests/runners.py``) import it under the
same name, so this module puts the template's file in its own place.
"""

from __future__ import annotations

from tests.runners import SHARED, load_file

load_file(__name__, SHARED)  # `from tests.local_servers import X` finds it
