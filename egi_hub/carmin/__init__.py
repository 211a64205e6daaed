"""CARMIN (VIP and other platforms) from notebooks and scripts: ``from egi_hub.carmin
import CarminClient``.

Notebook side only (design §2): loaded in kernels, never imported by hub code. The
client speaks CARMIN 0.3.1 and VIP's dialect of it; see `egi_hub.carmin.client` for the
blocking client, `egi_hub.carmin.aclient` for its async twin, and the modules below for
credentials, dialects, retries, transfers, input checks and safe archive extraction.

In a notebook, ``%load_ext egi_hub.carmin`` adds the ``%carmin`` magics
(`egi_hub.carmin.magics`; IPython is imported only then, scripts never need it).
"""

from __future__ import annotations

from typing import Any

from egi_hub.carmin.aclient import AsyncCarminClient
from egi_hub.carmin.archives import ArchiveError, extract_archive
from egi_hub.carmin.client import CarminClient
from egi_hub.carmin.credentials import DEFAULT_KEY_FILE, VIP_URL
from egi_hub.carmin.errors import CarminError, CarminInputError
from egi_hub.carmin.inputs import check_inputs, descriptor_from_pipeline
from egi_hub.carmin.models import (
    ErrorCodeAndMessage,
    Execution,
    ExecutionStatus,
    ParameterType,
    Path,
    Pipeline,
    PipelineParameter,
    Platform,
)
from egi_hub.carmin.retry import RetryPolicy


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext egi_hub.carmin``: the ``%carmin`` magics."""
    from egi_hub.carmin.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext egi_hub.carmin``: stop following executions, close the clients."""
    from egi_hub.carmin.magics import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "DEFAULT_KEY_FILE",
    "VIP_URL",
    "ArchiveError",
    "AsyncCarminClient",
    "CarminClient",
    "CarminError",
    "CarminInputError",
    "ErrorCodeAndMessage",
    "Execution",
    "ExecutionStatus",
    "ParameterType",
    "Path",
    "Pipeline",
    "PipelineParameter",
    "Platform",
    "RetryPolicy",
    "check_inputs",
    "descriptor_from_pipeline",
    "extract_archive",
    "load_ipython_extension",
    "unload_ipython_extension",
]
