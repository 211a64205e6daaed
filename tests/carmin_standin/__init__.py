"""A CARMIN 0.3.1 server stand-in on 127.0.0.1 that really runs pipelines with Boutiques.

VIP (the Virtual Imaging Platform) and other CARMIN platforms cannot be reached from the
test machines, so this serves what the spec (``/work/shared/specs/carmin-0.3.1.yaml``)
and VIP's known differences (``/work/shared/specs/README.md``, VIP's own sources) say,
not what egi-hub's client happens to send: its answers are checked against the spec
with ``openapi-core``, and its VIP dialect is driven by VIP's own client (PyPI
``vip-client``) in ``tests/integration/test_carmin_standin.py``.

Executions run ``bosh exec launch --no-container`` on the descriptors of
``tests/carmin_pipelines/`` (wordcount, fails, sleeps). Modules: `standin` (start/stop,
settings, test hooks), `server` (HTTP, streaming, Range, hooks), `api` (the operations
in both dialects), `executions` (running them), `pipelines` (descriptors as CARMIN
pipelines, input checks), `data` (platform paths as files), `runner` (one execution).

    standin = start_carmin_standin(tmp_path, dialect="vip", max_running=2)
    standin.url          # http://127.0.0.1:PORT/rest  (a client's CARMIN_URL)
    standin.fail_next(2) # the next two requests answer 500
    standin.stop()
"""

from .server import ApiError, RecordedRequest
from .standin import CarminStandin, start_carmin_standin

__all__ = ["ApiError", "CarminStandin", "RecordedRequest", "start_carmin_standin"]
