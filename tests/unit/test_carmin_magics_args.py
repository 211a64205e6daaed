"""Reading ``%carmin`` lines and ``%%carmin launch`` bodies (egi_hub.carmin.magics.args):
every mistake is one `MagicArgumentError` line, never a SystemExit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from egi_hub.carmin.magics.args import (
    SUBCOMMANDS,
    MagicArgumentError,
    MagicHelp,
    parse_body,
    parse_command,
    parse_params,
)


def test_every_subcommand_parses_with_its_options():
    assert parse_command("platform -o p").output == "p"
    assert parse_command("pipelines word").filter == "word"
    assert parse_command("describe App/1.0").pipeline == "App/1.0"
    launch = parse_command("launch wc --name \"my run\" -p a=1 --param 'b=x y' --wait -o r")
    assert (launch.pipeline, launch.run_name, launch.wait, launch.output) == (
        "wc",
        "my run",
        True,
        "r",
    )
    assert launch.params == {"a": "1", "b": "x y"}
    assert parse_command("status").identifier is None
    assert parse_command("status exec-1").identifier == "exec-1"
    results = parse_command("results e1 --to 'out dir'")
    assert (results.identifier, results.to) == ("e1", "out dir")
    assert parse_command("kill e1").identifier == "e1"
    assert parse_command("history --limit 5").limit == 5
    assert set(SUBCOMMANDS) == {
        "platform",
        "pipelines",
        "describe",
        "launch",
        "status",
        "results",
        "kill",
        "history",
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("nope", "unknown subcommand 'nope'"),
        ("describe", "the following arguments are required: pipeline"),
        ("launch wc --bogus", "unrecognized arguments: --bogus"),
        ("launch wc -p novalue", "expected NAME=VALUE"),
        ("launch wc -p =v", "expected NAME=VALUE"),
        ("history --limit 0", "expected a number from 1 to 10000"),
        ("history --limit x", "expected a number from 1 to 10000"),
        ("platform -o 1x", "not a Python variable name"),
        ("platform -o class", "not a Python variable name"),
        ("launch wc --name 'open", "no closing quotation"),
        ("status a\x00b", "control characters"),
        ("kill", "required: identifier"),
    ],
)
def test_mistakes_are_one_line_errors(line, message):
    with pytest.raises(MagicArgumentError) as info:
        parse_command(line)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_help_is_text_not_an_exit():
    with pytest.raises(MagicHelp) as info:
        parse_command("")
    assert "launch" in str(info.value) and "results" in str(info.value)
    with pytest.raises(MagicHelp) as info:
        parse_command("launch --help")
    assert "--param" in str(info.value) and "--wait" in str(info.value)


def test_a_cell_body_only_for_launch():
    with pytest.raises(MagicArgumentError, match="takes no cell body"):
        parse_command("status", "x: 1")
    command = parse_command("launch wc -p b=2", "a: 1\nb: 1\nlist: [x, y]\n")
    assert command.params == {"a": 1, "b": "2", "list": ["x", "y"]}


def test_params_repeated_keys_and_brackets_make_lists():
    assert parse_params(["f=a", "f=b", "g=[x, y]", "h=[]", "e="]) == {
        "f": ["a", "b"],
        "g": ["x", "y"],
        "h": [],
        "e": "",
    }
    assert parse_params(["k=a=b"]) == {"k": "a=b"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[1, 2]", "must map parameter names"),
        ("just text", "must map parameter names"),
        ("a: [1, {b: 2}]", "values must be plain values"),
        ("a: {b: 2}", "values must be plain values"),
        ("{1: 2}", "not YAML or JSON"),
        ('{"a": }', "not YAML or JSON"),
        ("a: [unclosed", "not YAML or JSON"),
        ("? [1]\n: 2", "not YAML or JSON"),
        ("1: 2", "expected text"),
        ("x" * (2 << 20), "over"),
    ],
)
def test_hostile_bodies(body, message):
    with pytest.raises(MagicArgumentError) as info:
        parse_body(body)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bodies_json_and_yaml():
    assert parse_body('{"a": "données", "n": 3}') == {"a": "données", "n": 3}
    assert parse_body("a: données\nflag: true\n") == {"a": "données", "flag": True}
    assert parse_body("  \n") == {}


def test_yaml_tags_are_not_executed():
    with pytest.raises(MagicArgumentError):
        parse_body("a: !!python/object/apply:os.system ['true']")


@given(st.text(max_size=200))
def test_any_line_parses_or_fails_cleanly(line):
    try:
        parse_command(line)
    except (MagicArgumentError, MagicHelp):
        pass


@given(st.text(max_size=300))
def test_any_body_parses_or_fails_cleanly(body):
    try:
        result = parse_body(body)
    except MagicArgumentError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(result, dict)


@pytest.mark.parametrize(
    "body",
    ['{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "a: " + "[" * 100_000 + "]" * 100_000],
)
def test_a_deeply_nested_cell_body_is_one_line(body):
    with pytest.raises(MagicArgumentError, match="nested too deeply"):
        parse_body(body)
