"""CARMIN (VIP and other platforms) from notebooks and scripts: ``from egi_hub.carmin
import CarminClient``.

Notebook side only (design §2): loaded in kernels, never imported by hub code. The
client speaks CARMIN 0.3.1 and VIP's dialect of it; see `egi_hub.carmin.client` for the
blocking client, `egi_hub.carmin.aclient` for its async twin, and the modules below for
credentials, dialects, retries, transfers, input checks and safe archive extraction.
"""

from __future__ import annotations

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
]
