"""Typed views of the CARMIN 0.3.1 schemas (``components/schemas`` of the spec).

Why dataclasses and not the raw JSON: platforms differ (VIP sends ``path`` where the spec
says ``platformPath``, and dates in milliseconds), and the magics should not have to know.
Each ``from_json`` takes what a platform sent, tolerates missing optional fields and
unknown extra ones (kept in ``extra``), and refuses a body that is not the expected shape
with `ValueError` (turned into a `CarminError` by the caller). Dates become aware UTC
datetimes whatever the unit on the wire.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ErrorCodeAndMessage",
    "Execution",
    "ExecutionStatus",
    "ParameterType",
    "Path",
    "Pipeline",
    "PipelineParameter",
    "Platform",
]

# A date above this many seconds since the epoch (year 5138) is in milliseconds: VIP's.
_MS_THRESHOLD = 1e11


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"the platform sent {type(data).__name__} where {what} was expected")
    return data


def _str(data: dict[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        raise ValueError(f"{what} without {key!r}")
    return str(value)


def _opt_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def to_datetime(value: Any, *, milliseconds: bool | None = None) -> dt.datetime | None:
    """A CARMIN date (seconds since the epoch; VIP: milliseconds) as aware UTC, or None.

    ``milliseconds=None`` guesses from the size (a date after year 5138 is in ms)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    if milliseconds or (milliseconds is None and seconds > _MS_THRESHOLD):
        seconds /= 1000
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class ErrorCodeAndMessage:
    """A platform's error body: ``{"errorCode", "errorMessage", "errorDetails"?}``."""

    code: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> ErrorCodeAndMessage:
        data = _object(data, "an error")
        code = _opt_int(data.get("errorCode"))
        if code is None or "errorMessage" not in data:
            raise ValueError("not an {errorCode, errorMessage} object")
        details = data.get("errorDetails")
        return cls(code, str(data["errorMessage"]), details if isinstance(details, dict) else {})


@dataclass(frozen=True)
class Platform:
    """``GET /platform``: what the platform is and supports."""

    name: str
    api_version: str
    modules: list[str]
    description: str = ""
    email: str = ""
    default_limit_list_executions: int | None = None
    min_timeout: int | None = None
    max_timeout: int | None = None
    default_timeout: int | None = None
    unsupported_methods: list[str] = field(default_factory=list)
    studies_support: bool = False
    default_study: str = ""
    pipeline_properties: list[str] = field(default_factory=list)
    error_codes: list[ErrorCodeAndMessage] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = frozenset(
        "platformName supportedAPIVersion supportedModules platformDescription email "
        "defaultLimitListExecutions minAuthorizedExecutionTimeout maxAuthorizedExecutionTimeout "
        "defaultExecutionTimeout unsupportedMethods studiesSupport defaultStudy "
        "supportedPipelineProperties APIErrorCodesAndMessages".split()
    )

    @classmethod
    def from_json(cls, data: Any) -> Platform:
        data = _object(data, "the platform's properties")
        errors = []
        for item in data.get("APIErrorCodesAndMessages") or []:
            try:
                errors.append(ErrorCodeAndMessage.from_json(item))
            except ValueError:
                continue
        return cls(
            name=str(data.get("platformName") or ""),
            api_version=str(data.get("supportedAPIVersion") or ""),
            modules=[str(m) for m in data.get("supportedModules") or []],
            description=str(data.get("platformDescription") or ""),
            email=str(data.get("email") or ""),
            default_limit_list_executions=_opt_int(data.get("defaultLimitListExecutions")),
            min_timeout=_opt_int(data.get("minAuthorizedExecutionTimeout")),
            max_timeout=_opt_int(data.get("maxAuthorizedExecutionTimeout")),
            default_timeout=_opt_int(data.get("defaultExecutionTimeout")),
            unsupported_methods=[str(m) for m in data.get("unsupportedMethods") or []],
            studies_support=bool(data.get("studiesSupport", False)),
            default_study=str(data.get("defaultStudy") or ""),
            pipeline_properties=[str(p) for p in data.get("supportedPipelineProperties") or []],
            error_codes=errors,
            extra={k: v for k, v in data.items() if k not in cls._KNOWN},
        )


class ParameterType(enum.StrEnum):
    """A pipeline parameter's type (``ParameterType`` in the spec)."""

    FILE = "File"
    STRING = "String"
    BOOLEAN = "Boolean"
    INT64 = "Int64"
    DOUBLE = "Double"
    LIST = "List"


@dataclass(frozen=True)
class PipelineParameter:
    """One parameter of a pipeline."""

    name: str
    type: str
    optional: bool
    returned: bool
    default: Any = None
    description: str = ""

    @classmethod
    def from_json(cls, data: Any) -> PipelineParameter:
        data = _object(data, "a pipeline parameter")
        return cls(
            name=_str(data, "name", "a pipeline parameter"),
            type=str(data.get("type") or ParameterType.STRING),
            optional=bool(data.get("isOptional", False)),
            returned=bool(data.get("isReturnedValue", False)),
            default=data.get("defaultValue"),
            description=str(data.get("description") or ""),
        )


@dataclass(frozen=True)
class Pipeline:
    """A pipeline the platform can run (VIP's identifiers look like ``App/Version``)."""

    identifier: str
    name: str
    version: str
    description: str = ""
    can_execute: bool | None = None
    parameters: list[PipelineParameter] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Pipeline:
        data = _object(data, "a pipeline")
        identifier = _str(data, "identifier", "a pipeline")
        can = data.get("canExecute")
        props = data.get("properties")
        return cls(
            identifier=identifier,
            name=str(data.get("name") or identifier),
            version=str(data.get("version") or ""),
            description=str(data.get("description") or ""),
            can_execute=can if isinstance(can, bool) else None,
            parameters=[PipelineParameter.from_json(p) for p in data.get("parameters") or []],
            properties={str(k): str(v) for k, v in props.items()}
            if isinstance(props, dict)
            else {},
        )


class ExecutionStatus(enum.StrEnum):
    """An execution's status. ``Ready`` is *not* finished: it waits to be played."""

    INITIALIZING = "Initializing"
    READY = "Ready"
    RUNNING = "Running"
    FINISHED = "Finished"
    INITIALIZATION_FAILED = "InitializationFailed"
    EXECUTION_FAILED = "ExecutionFailed"
    UNKNOWN = "Unknown"
    KILLED = "Killed"

    @property
    def is_final(self) -> bool:
        """True once the execution can no longer change (finished, failed or killed)."""
        return self in _FINAL

    @property
    def is_success(self) -> bool:
        return self is ExecutionStatus.FINISHED

    @classmethod
    def parse(cls, value: Any) -> ExecutionStatus:
        """The status a platform sent; anything unheard of is ``Unknown``."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN


_FINAL = frozenset(
    {
        ExecutionStatus.FINISHED,
        ExecutionStatus.INITIALIZATION_FAILED,
        ExecutionStatus.EXECUTION_FAILED,
        ExecutionStatus.KILLED,
    }
)


@dataclass(frozen=True)
class Execution:
    """An execution of a pipeline (dates are aware UTC datetimes)."""

    identifier: str
    name: str
    pipeline: str
    status: ExecutionStatus
    input_values: dict[str, Any] = field(default_factory=dict)
    returned_files: dict[str, list[str]] | None = None
    timeout: int | None = None
    study: str = ""
    error_code: int | None = None
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = frozenset(
        "identifier name pipelineIdentifier status inputValues returnedFiles timeout "
        "studyIdentifier errorCode startDate endDate".split()
    )

    @classmethod
    def from_json(cls, data: Any, *, milliseconds: bool | None = None) -> Execution:
        data = _object(data, "an execution")
        files = data.get("returnedFiles")
        returned = None
        if isinstance(files, dict):
            returned = {
                str(k): [str(u) for u in (v if isinstance(v, list) else [v])]
                for k, v in files.items()
            }
        inputs = data.get("inputValues")
        return cls(
            identifier=_str(data, "identifier", "an execution"),
            name=str(data.get("name") or ""),
            pipeline=str(data.get("pipelineIdentifier") or ""),
            status=ExecutionStatus.parse(data.get("status")),
            input_values=dict(inputs) if isinstance(inputs, dict) else {},
            returned_files=returned,
            timeout=_opt_int(data.get("timeout")),
            study=str(data.get("studyIdentifier") or ""),
            error_code=_opt_int(data.get("errorCode")),
            start_date=to_datetime(data.get("startDate"), milliseconds=milliseconds),
            end_date=to_datetime(data.get("endDate"), milliseconds=milliseconds),
            extra={k: v for k, v in data.items() if k not in cls._KNOWN},
        )


@dataclass(frozen=True)
class Path:
    """A file or directory on the platform (``platformPath``; VIP says ``path``)."""

    platform_path: str
    is_directory: bool
    size: int | None = None
    last_modified: dt.datetime | None = None
    execution_id: str = ""
    mime_type: str = ""

    @classmethod
    def from_json(cls, data: Any, *, milliseconds: bool | None = None) -> Path:
        data = _object(data, "a path")
        where = data.get("platformPath", data.get("path"))
        if where is None:
            raise ValueError("a path without 'platformPath' (or VIP's 'path')")
        return cls(
            platform_path=str(where),
            is_directory=bool(data.get("isDirectory", False)),
            size=_opt_int(data.get("size")),
            last_modified=to_datetime(data.get("lastModificationDate"), milliseconds=milliseconds),
            execution_id=str(data.get("executionId") or ""),
            mime_type=str(data.get("mimeType") or ""),
        )

    @property
    def name(self) -> str:
        """The last component of the path."""
        return self.platform_path.rstrip("/").rsplit("/", 1)[-1]
