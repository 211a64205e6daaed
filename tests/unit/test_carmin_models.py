"""egi_hub.carmin.models: what platforms send becomes typed, whatever the dialect."""

from __future__ import annotations

import datetime as dt

import pytest

from egi_hub.carmin import (
    ErrorCodeAndMessage,
    Execution,
    ExecutionStatus,
    Path,
    Pipeline,
    Platform,
)


def test_platform_keeps_known_fields_and_extras():
    p = Platform.from_json(
        {
            "platformName": "VIP",
            "supportedAPIVersion": "0.3",
            "supportedModules": ["Processing", "Data"],
            "defaultLimitListExecutions": 50,
            "APIErrorCodesAndMessages": [{"errorCode": 8000, "errorMessage": "x"}, {"bad": 1}],
            "somethingNew": True,
        }
    )
    assert p.name == "VIP" and p.modules == ["Processing", "Data"]
    assert p.default_limit_list_executions == 50
    assert [e.code for e in p.error_codes] == [8000]
    assert p.extra == {"somethingNew": True}


def test_pipeline_with_parameters_and_vip_identifier():
    p = Pipeline.from_json(
        {
            "identifier": "CQUEST/0.3",
            "name": "CQUEST",
            "version": "0.3",
            "properties": {"a": 1},
            "parameters": [
                {"name": "file", "type": "File", "isOptional": False, "isReturnedValue": False},
                {
                    "name": "n",
                    "type": "Int64",
                    "isOptional": True,
                    "isReturnedValue": False,
                    "defaultValue": 3,
                },
            ],
        }
    )
    assert p.identifier == "CQUEST/0.3" and p.properties == {"a": "1"}
    assert [x.name for x in p.parameters] == ["file", "n"] and p.parameters[1].default == 3


def test_execution_status_and_dates_in_seconds_or_milliseconds():
    seconds = Execution.from_json(
        {
            "identifier": "e1",
            "name": "n",
            "pipelineIdentifier": "p",
            "status": "Running",
            "inputValues": {},
            "startDate": 1_700_000_000,
        }
    )
    millis = Execution.from_json(
        {
            "identifier": "e1",
            "name": "n",
            "pipelineIdentifier": "p",
            "status": "Running",
            "inputValues": {},
            "startDate": 1_700_000_000_000,
        }
    )
    assert (
        seconds.start_date == millis.start_date == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    )
    forced = Execution.from_json(
        {"identifier": "e", "status": "Finished", "startDate": 5_000}, milliseconds=True
    )
    assert forced.start_date == dt.datetime.fromtimestamp(5, dt.UTC)


def test_ready_is_not_final_and_unheard_of_status_is_unknown():
    assert not ExecutionStatus.READY.is_final
    assert ExecutionStatus.FINISHED.is_final and ExecutionStatus.FINISHED.is_success
    assert ExecutionStatus.EXECUTION_FAILED.is_final and not ExecutionStatus.KILLED.is_success
    e = Execution.from_json({"identifier": "x", "status": "Exploded"})
    assert e.status is ExecutionStatus.UNKNOWN


def test_returned_files_become_lists():
    e = Execution.from_json(
        {"identifier": "x", "status": "Finished", "returnedFiles": {"out": ["u1"], "one": "u2"}}
    )
    assert e.returned_files == {"out": ["u1"], "one": ["u2"]}
    assert Execution.from_json({"identifier": "x", "status": "Running"}).returned_files is None


def test_path_accepts_vips_path_field():
    spec = Path.from_json(
        {"platformPath": "/a/b.txt", "isDirectory": False, "size": 3, "lastModificationDate": 10}
    )
    vip = Path.from_json(
        {"path": "/vip/Home/b.txt", "isDirectory": False, "lastModificationDate": 10_000},
        milliseconds=True,
    )
    assert spec.platform_path == "/a/b.txt" and spec.name == "b.txt" and spec.size == 3
    assert vip.platform_path == "/vip/Home/b.txt" and vip.last_modified == spec.last_modified


@pytest.mark.parametrize(
    "parse, data",
    [
        (Path.from_json, {"isDirectory": True}),
        (Execution.from_json, {"status": "Running"}),
        (Pipeline.from_json, ["not", "an", "object"]),
        (ErrorCodeAndMessage.from_json, {"errorMessage": "no code"}),
    ],
)
def test_wrong_shapes_are_refused(parse, data):
    with pytest.raises(ValueError):
        parse(data)


def test_error_body():
    e = ErrorCodeAndMessage.from_json({"errorCode": 40101, "errorMessage": "Bad credentials"})
    assert (e.code, e.message) == (40101, "Bad credentials")
