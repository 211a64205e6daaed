"""egi_hub.carmin.inputs: parameters refused before anything is sent, one line each."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from egi_hub.carmin import CarminInputError, Pipeline, check_inputs, descriptor_from_pipeline

DESCRIPTOR = {
    "name": "wc",
    "inputs": [
        {"id": "infile", "name": "Input", "type": "File", "description": "text to count"},
        {
            "id": "mode",
            "name": "Mode",
            "type": "String",
            "optional": True,
            "value-choices": ["lines", "words"],
        },
        {
            "id": "n",
            "name": "N",
            "type": "Number",
            "optional": True,
            "integer": True,
            "minimum": 1,
            "maximum": 10,
        },
        {
            "id": "ratio",
            "name": "Ratio",
            "type": "Number",
            "optional": True,
            "minimum": 0,
            "exclusive-minimum": True,
        },
        {"id": "verbose", "name": "Verbose", "type": "Flag", "optional": True},
        {
            "id": "tags",
            "name": "Tags",
            "type": "String",
            "optional": True,
            "list": True,
            "min-list-entries": 1,
            "max-list-entries": 2,
        },
        {"id": "a", "name": "A", "type": "String", "optional": True, "requires-inputs": ["b"]},
        {"id": "b", "name": "B", "type": "String", "optional": True},
        {"id": "x", "name": "X", "type": "String", "optional": True, "disables-inputs": ["b"]},
        {"id": "p", "name": "P", "type": "String", "optional": True},
        {"id": "q", "name": "Q", "type": "String", "optional": True},
        {"id": "level", "name": "Level", "type": "Number", "default-value": 2},
    ],
    "groups": [{"id": "pq", "name": "pq", "members": ["p", "q"], "mutually-exclusive": True}],
}


def test_good_inputs_are_converted():
    out = check_inputs(
        DESCRIPTOR,
        {
            "infile": PurePosixPath("/vip/Home/a.txt"),
            "n": "3",
            "ratio": "0.5",
            "verbose": "true",
            "tags": "one",
            "mode": "words",
            "unused": None,
        },
    )
    assert out == {
        "infile": "/vip/Home/a.txt",
        "n": 3,
        "ratio": 0.5,
        "verbose": True,
        "tags": ["one"],
        "mode": "words",
    }


@pytest.mark.parametrize(
    "inputs, culprit, words",
    [
        ({}, "infile", "missing required File parameter: text to count"),
        ({"infile": "f", "nope": 1}, "nope", "unknown parameter"),
        ({"infile": "f", "n": "three"}, "n", "expected a number"),
        ({"infile": "f", "n": 2.5}, "n", "expected an integer"),
        ({"infile": "f", "n": 11}, "n", "must be <= 10"),
        ({"infile": "f", "n": 0}, "n", "must be >= 1"),
        ({"infile": "f", "ratio": 0}, "ratio", "must be > 0"),
        ({"infile": "f", "ratio": "nan"}, "ratio", "finite"),
        ({"infile": "f", "n": True}, "n", "expected a number"),
        ({"infile": "f", "verbose": "maybe"}, "verbose", "true or false"),
        ({"infile": "f", "mode": "bytes"}, "mode", "is not one of: lines, words"),
        ({"infile": "f", "tags": []}, "tags", "at least 1"),
        ({"infile": "f", "tags": ["a", "b", "c"]}, "tags", "at most 2"),
        ({"infile": "f", "mode": ["lines"]}, "mode", "one value"),
        ({"infile": ""}, "infile", "empty file name"),
        ({"infile": "a\nb"}, "infile", "control characters"),
        ({"infile": {"x": 1}}, "infile", "expected a file"),
        ({"infile": "f", "a": "1"}, "a", "needs parameter 'b'"),
        ({"infile": "f", "x": "1", "b": "2"}, "x", "cannot be given together with 'b'"),
        ({"infile": "f", "p": "1", "q": "2"}, "q", "excludes 'p'"),
    ],
)
def test_bad_inputs_name_the_parameter(inputs, culprit, words):
    with pytest.raises(CarminInputError) as info:
        check_inputs(DESCRIPTOR, inputs)
    assert info.value.parameter == culprit
    assert words in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_groups_one_required_and_all_or_none():
    d = {
        "inputs": [{"id": k, "type": "String", "optional": True} for k in "abcd"],
        "groups": [
            {"id": "g1", "members": ["a", "b"], "one-is-required": True},
            {"id": "g2", "members": ["c", "d"], "all-or-none": True},
        ],
    }
    with pytest.raises(CarminInputError, match="give one of: a, b"):
        check_inputs(d, {})
    with pytest.raises(CarminInputError, match="all of its parameters or none"):
        check_inputs(d, {"a": "1", "c": "2"})
    assert check_inputs(d, {"b": "1", "c": "2", "d": "3"}) == {"b": "1", "c": "2", "d": "3"}


def test_extra_platform_names_pass_through():
    out = check_inputs(
        DESCRIPTOR, {"infile": "f", "results-directory": "/vip/Home"}, extra=["results-directory"]
    )
    assert out["results-directory"] == "/vip/Home"


def test_descriptor_from_carmin_pipeline():
    pipeline = Pipeline.from_json(
        {
            "identifier": "p",
            "name": "p",
            "version": "1",
            "properties": {},
            "parameters": [
                {"name": "in", "type": "File", "isOptional": False, "isReturnedValue": False},
                {"name": "k", "type": "Int64", "isOptional": True, "isReturnedValue": False},
                {"name": "out", "type": "File", "isOptional": False, "isReturnedValue": True},
            ],
        }
    )
    d = descriptor_from_pipeline(pipeline)
    assert [i["id"] for i in d["inputs"]] == ["in", "k"]
    assert check_inputs(d, {"in": "x", "k": "4"}) == {"in": "x", "k": 4}
    with pytest.raises(CarminInputError, match="'k': expected an integer"):
        check_inputs(d, {"in": "x", "k": "4.5"})
