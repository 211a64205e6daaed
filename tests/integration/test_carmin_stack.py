"""``%carmin`` on the real local stack: a user's single-user server (spawned by the hub,
its environment from the site file's ``Spawner.environment``) runs the magics in its
own kernel against the CARMIN server stand-in speaking VIP's dialect: pipelines,
describe, launch with a local file and ``--wait``, results downloaded into the user's
folder; an unknown parameter refused before anything is sent."""

from __future__ import annotations

import pytest

from egi_hub.names import path_component
from tests.carmin_standin import start_carmin_standin
from tests.kernel import run_code
from tests.stackrunner import default_site, start_stack

KEY = "standin-key"
USER = "alice"


@pytest.fixture(scope="module")
def carmin_stack(tmp_path_factory):
    standin = start_carmin_standin(tmp_path_factory.mktemp("standin"), dialect="vip")
    site = default_site("__API_TOKEN__")
    site["Spawner"] = {
        "environment": {"CARMIN_URL": standin.url, "CARMIN_API_KEY": KEY, "CARMIN_WIDGETS": "0"}
    }
    stack = start_stack(tmp_path_factory.mktemp("stack"), site)
    try:
        stack.start_server(USER)
        yield stack, standin
    finally:
        stack.stop()
        standin.stop()


def run(stack, code: str) -> str:
    return run_code(stack.url, f"/user/{USER}/", stack.api_token, code, timeout=180)


def test_carmin_magics_in_a_users_server(carmin_stack):
    stack, standin = carmin_stack
    out = run(
        stack,
        "%load_ext egi_hub.carmin\n"
        "%carmin pipelines -o ps\n"
        "print('PIPELINES', sorted(p.identifier for p in ps))\n"
        "%carmin describe wordcount -o d\n"
        "print('INPUTS', [i['id'] for i in d['inputs']])\n"
        "open('mots é.txt', 'w', encoding='utf-8').write('a b c d e f\\n')\n"
        '%carmin launch wordcount --param "input_file=mots é.txt" --wait -o r\n'
        "print('STATUS', r.identifier, r.status.value)\n"
        "%carmin results {r.identifier} --to résultats -o files\n"
        "print('FILES', [f.name for f in files])\n",
    )
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "wordcount/1.0" in lines["PIPELINES"] and "sleeps/1.0" in lines["PIPELINES"], out
    assert "'input_file'" in lines["INPUTS"] and "'output_name'" in lines["INPUTS"]
    _, identifier, status = lines["STATUS"].split()
    assert status == "Finished", out
    assert lines["FILES"] == "FILES ['counts.txt']"
    home = stack.data_dir / "users" / path_component(USER)
    assert (home / "résultats" / identifier / "counts.txt").read_text().strip() == "6"
    inputs = standin.execution(identifier).input_values
    assert standin.read_file(inputs["input_file"]) == b"a b c d e f\n"
    created = [r for r in standin.requests if r.method == "POST" and "/executions" in r.path]
    headers = {k.lower(): v for k, v in created[0].headers.items()}
    assert headers["apikey"] == KEY  # VIP's header, from the server's environment

    standin.clear_requests()
    refused = run(
        stack,
        "%load_ext egi_hub.carmin\n"
        "%carmin launch wordcount --param 'input_file=mots é.txt' --param nope=1\n",
    )
    assert "UsageError: carmin: parameter 'nope': unknown parameter" in refused, refused
    assert standin.count("PUT") == 0 and standin.count("POST") == 0
