"""The ElasticMQ runner generated SQS packages carry, loaded from the template
(``tests/runners.py``); run as a script it is the runner's CLI::

    .venv/bin/python tests/sqs_server.py start   # or fetch, status, stop
"""

import sys
from pathlib import Path

if not __package__:  # a script: tests/, not the repository, is on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.runners import stand_in

stand_in(__name__, "sqs")
