"""The CARMIN 0.3.1 operations of the stand-in, in the spec's dialect or VIP's.

Routes below ``/rest`` (VIP's prefix; the spec leaves it to the platform):
``/platform``, ``/authenticate``, ``/pipelines[/{id}[/boutiquesdescriptor]]``,
``/executions[/count|/{id}[/results|stdout|stderr|play|kill]]``, ``/path/{path}``.

VIP's dialect (``/work/shared/specs/README.md``, "Known differences", and VIP's own
sources): the ``apikey`` header (a wrong one: 401 ``{40101, "Bad credentials"}``, and
``PUT /platform`` answers a right one with a body that is not an error object, as
``vip-client`` checks keys); errors 8xxx with HTTP 400 (8007 no such pipeline, 8015
no such execution, 8018 missing input, 8009 invalid input, 8001 not implemented) and
2001 for "too many running executions"; ``startDate``/``endDate`` in milliseconds;
pipeline ids ``Name/Version`` (the slash raw or as ``%2F``) and the descriptor at
``/pipelines/{id}?format=boutiques``; ``POST /executions`` starts at once (``play`` is
8001), ``PUT /executions/{id}`` answers the execution, deletion is
``PUT /executions/{id}/delete`` with ``{"deleteFiles": …}``; ``Path`` objects carry
``path`` (and ``exists``) instead of ``platformPath``; ``returnedFiles`` are platform
paths, present (empty) while running; uploads answer 201 with no body; no md5; about
15 MB of content a request (`CarminStandin.content_limit`, 413 beyond).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .data import DataError, TooLarge
from .executions import ENDED, Execution, results_location_of
from .pipelines import InputError, check_inputs
from .server import ApiError

if TYPE_CHECKING:
    from .server import Handler
    from .standin import CarminStandin

# kind -> (HTTP status, code in the spec's dialect, code in VIP's)
ERRORS = {
    "auth": (401, 40101, 40101),
    "login": (401, 40102, 8002),
    "bad_request": (400, 40001, 8000),
    "invalid_input": (400, 40002, 8009),
    "missing_input": (400, 40003, 8018),
    "bad_path": (400, 40004, 8013),
    "no_pipeline": (404, 40401, 8007),
    "no_execution": (404, 40402, 8015),
    "no_path": (404, 40403, 8000),
    "conflict": (409, 40901, 8000),
    "too_large": (413, 41301, 8000),
    "too_many": (429, 42901, 2001),
    "not_allowed": (405, 40501, 8000),
    "not_implemented": (501, 50101, 8001),
}
DATA_KINDS = {
    "bad_path": "bad_path",
    "not_found": "no_path",
    "exists": "conflict",
    "not_directory": "bad_request",
    "is_directory": "conflict",
    "no_parent": "bad_request",
    "bad_archive": "bad_request",
    "too_large": "too_large",
}


ACTIONS = ("content", "exists", "properties", "list", "md5")


def no_pipeline(ident: str) -> str:
    return f"The {ident} pipeline does not exists or cannot be used"


def fail(standin: CarminStandin, kind: str, message: str) -> ApiError:
    status, code, vip_code = ERRORS[kind]
    if standin.dialect == "vip":
        # VIP answers its API errors 400 unless they carry their own status
        status = status if kind in ("auth", "login", "too_large", "not_allowed") else 400
        return ApiError(status, vip_code, message)
    return ApiError(status, code, message)


def dispatch(h: Handler, method: str, route: str, query: dict[str, str]) -> None:
    standin: CarminStandin = h.server.standin
    if route == "/platform" and method == "GET":
        return h.send_json(200, standin.platform_properties())
    if route == "/authenticate" and method == "POST":
        return authenticate(h, standin)
    user = authorised_user(h, standin)
    if route == "/platform":
        if standin.dialect == "vip" and method == "PUT":
            # what VIP's server answers a method it lacks: Spring's own body, not an error
            # object (vip-client takes any such answer for "the key is right")
            body = {"timestamp": int(time.time() * 1000), "status": 405}
            body |= {"error": "Method Not Allowed", "path": "/rest/platform"}
            return h.send_json(405, body)
        raise fail(standin, "not_allowed", f"{method} is not allowed on /platform")
    if route == "/pipelines" or route.startswith("/pipelines/"):
        return pipelines(h, standin, method, route[len("/pipelines/") :], query)
    if route == "/executions" or route.startswith("/executions/"):
        return executions(h, standin, user, method, route[len("/executions/") :], query)
    if route.startswith("/path/") or route == "/path":
        return paths(h, standin, method, route[len("/path") :], query)
    raise ApiError(404, 40400 if standin.dialect != "vip" else 8000, f"no such resource: {route}")


# -- authentication ------------------------------------------------------------------
def authorised_user(h: Handler, standin: CarminStandin) -> str:
    key = h.headers.get("apikey")
    if key is not None and key in standin.api_keys:
        return standin.api_keys[key]
    auth = h.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip() in standin.bearer_tokens:
        return standin.bearer_tokens[auth[7:].strip()]
    h.drain()
    raise fail(standin, "auth", "Bad credentials")


def authenticate(h: Handler, standin: CarminStandin) -> None:
    body = h.read_json(1 << 16)
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("username", "password")
    ):
        raise fail(standin, "bad_request", "username and password (strings) are required")
    user = body["username"]
    if standin.passwords.get(user) != body["password"]:
        raise fail(standin, "login", "Bad credentials")
    key = next(k for k, u in standin.api_keys.items() if u == user)
    h.send_json(200, {"httpHeader": "apikey", "httpHeaderValue": key})


# -- pipelines -----------------------------------------------------------------------
def pipelines(h: Handler, standin: CarminStandin, method: str, rest: str, query: dict) -> None:
    if method != "GET":
        raise fail(standin, "not_allowed", f"{method} is not allowed on pipelines")
    if not rest:
        found = list(standin.pipelines.values())
        prop = query.get("property")
        if prop is not None:
            if prop not in standin.pipeline_properties():
                raise fail(standin, "bad_request", f"unsupported pipeline property: {prop}")
            found = [p for p in found if prop in p.properties]
            if "propertyValue" in query:
                found = [p for p in found if p.properties[prop] == query["propertyValue"]]
        return h.send_json(200, [p.to_json(standin.dialect, standin.home) for p in found])
    ident = unquote(rest)
    descriptor = False
    if standin.dialect == "vip":
        descriptor = query.get("format") == "boutiques"
        if "/" not in ident:
            raise fail(standin, "bad_request", f"The {ident} pipeline identifier is not valid")
    elif ident.endswith("/boutiquesdescriptor"):
        ident, descriptor = ident[: -len("/boutiquesdescriptor")], True
    pipeline = standin.pipelines.get(ident)
    if pipeline is None:
        raise fail(standin, "no_pipeline", no_pipeline(ident))
    if descriptor:
        return h.send_json(200, pipeline.descriptor)
    h.send_json(200, pipeline.to_json(standin.dialect, standin.home))


# -- executions ----------------------------------------------------------------------
def execution_json(standin: CarminStandin, ex: Execution) -> dict[str, Any]:
    scale = 1000 if standin.dialect == "vip" else 1
    out: dict[str, Any] = {
        "identifier": ex.identifier,
        "name": ex.name,
        "pipelineIdentifier": ex.pipeline.identifier,
        "timeout": ex.timeout,
        "status": ex.status,
        "inputValues": ex.input_values,
    }
    if ex.study is not None:
        out["studyIdentifier"] = ex.study
    if ex.error_code is not None:
        out["errorCode"] = ex.error_code
    if ex.start is not None:
        out["startDate"] = int(ex.start * scale)
    if ex.end is not None:
        out["endDate"] = int(ex.end * scale)
    if standin.dialect == "vip":
        out["returnedFiles"] = ex.returned if ex.status == "Finished" else {}
        out["resultsLocation"] = ex.results_location
    elif ex.status == "Finished":
        out["returnedFiles"] = {
            k: [standin.content_url(p) for p in v] for k, v in ex.returned.items()
        }
    return out


def executions(
    h: Handler, standin: CarminStandin, user: str, method: str, rest: str, query: dict
) -> None:
    engine = standin.engine
    if rest in ("", "count"):
        study = query.get("studyIdentifier")
        mine = engine.of_user(user, study)
        if rest == "count" and method == "GET":
            return h.send_bytes(200, str(len(mine)).encode(), "text/plain;charset=UTF-8")
        if rest == "" and method == "GET":
            offset = number(standin, query.get("offset", "0"), "offset")
            limit = number(standin, query.get("limit", "500"), "limit")
            if standin.dialect == "vip" and limit > 500:
                raise fail(standin, "bad_request", "limit parameter too high")
            chosen = mine[offset : offset + limit]
            return h.send_json(200, [execution_json(standin, e) for e in chosen])
        if rest == "" and method == "POST":
            return create_execution(h, standin, user)
        raise fail(standin, "not_allowed", f"{method} is not allowed here")
    ident, _, action = rest.partition("/")
    ident = unquote(ident)
    with engine.lock:
        ex = engine.executions.get(ident)
    if ex is None or ex.user != user:
        h.drain()
        raise fail(standin, "no_execution", f"No execution available with this id : {ident}")
    key = (method, action)
    if key == ("GET", ""):
        return h.send_json(200, execution_json(standin, ex))
    if key == ("PUT", ""):
        return update_execution(h, standin, ex)
    if key == ("GET", "results"):
        found = [p for paths in ex.returned.values() for p in paths if standin.data.exists(p)]
        props = [standin.path_json(p, ex.identifier) for p in found]
        return h.send_json(200, props if ex.status == "Finished" else [])
    if key in (("GET", "stdout"), ("GET", "stderr")):
        return h.send_text(ex.log(action))
    if key == ("PUT", "play"):
        if standin.dialect == "vip":
            raise fail(standin, "not_implemented", "The playExecution method is not implemented")
        if ex.status != "Initializing":
            raise fail(standin, "conflict", f"the execution is {ex.status}, not Initializing")
        check_running(standin, user)
        engine.play(ex)
        return h.send_empty(204)
    if key == ("PUT", "kill"):
        if ex.status in ENDED:
            raise fail(standin, "conflict", f"the execution has already ended ({ex.status})")
        engine.kill(ex)
        return h.send_empty(204)
    if key == ("DELETE", "") and standin.dialect != "vip":
        engine.delete(ex, query.get("deleteFiles", "false").lower() == "true")
        return h.send_empty(204)
    if key == ("PUT", "delete") and standin.dialect == "vip":
        body = h.read_json(1 << 16) if h.has_body() else {}
        delete_files = isinstance(body, dict) and body.get("deleteFiles") is True
        engine.delete(ex, delete_files)
        return h.send_empty(204)
    raise fail(standin, "not_allowed", f"{method} is not allowed on executions/{rest}")


def number(standin: CarminStandin, text: str, what: str) -> int:
    if not text.isdigit():
        raise fail(standin, "bad_request", f"{what} must be a non-negative integer")
    return int(text)


def check_running(standin: CarminStandin, user: str) -> None:
    if standin.max_running is None:
        return
    running = standin.engine.running(user)
    if running >= standin.max_running:
        raise fail(
            standin,
            "too_many",
            f"Max number of running executions reached. You already have {running} "
            "running executions.",
        )


def create_execution(h: Handler, standin: CarminStandin, user: str) -> None:
    body = h.read_json(1 << 20)
    if not isinstance(body, dict):
        raise fail(standin, "bad_request", "the execution must be a JSON object")
    for name in ("name", "pipelineIdentifier", "inputValues"):
        if name not in body:
            raise fail(standin, "missing_input", f"Input field '{name}' is missing")
    if not isinstance(body["name"], str) or not isinstance(body["pipelineIdentifier"], str):
        raise fail(standin, "invalid_input", "name and pipelineIdentifier must be strings")
    timeout = body.get("timeout", 0)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise fail(standin, "invalid_input", "timeout must be a non-negative integer")
    study = body.get("studyIdentifier")
    if study is not None and not isinstance(study, str):
        raise fail(standin, "invalid_input", "studyIdentifier must be a string")
    pipeline = standin.pipelines.get(body["pipelineIdentifier"])
    if pipeline is None:
        raise fail(standin, "no_pipeline", no_pipeline(body["pipelineIdentifier"]))
    try:
        invocation, files = check_inputs(pipeline, body["inputValues"], standin.dialect)
    except InputError as e:
        raise fail(standin, f"{e.kind}_input", e.message) from None
    platform_files = {}
    for ident, values in files.items():
        platform_files[ident] = [standin.platform_path_of(v, ident) for v in values]
        given = platform_files[ident]
        invocation[ident] = given if isinstance(invocation[ident], list) else given[0]
    results = results_location_of(body, standin.home, standin.dialect)
    try:
        standin.data.segments(results)
    except DataError as e:
        raise fail(standin, "bad_path", e.message) from None
    if standin.dialect == "vip":
        check_running(standin, user)
    ex = standin.engine.create(
        user=user,
        pipeline=pipeline,
        name=body["name"],
        input_values=body["inputValues"],
        invocation=invocation,
        files=platform_files,
        results_location=results,
        study=study,
        timeout=timeout,
    )
    if standin.dialect == "vip":
        standin.engine.play(ex)
    h.send_json(200, execution_json(standin, ex))


def update_execution(h: Handler, standin: CarminStandin, ex: Execution) -> None:
    body = h.read_json(1 << 20)
    if not isinstance(body, dict):
        raise fail(standin, "bad_request", "the execution must be a JSON object")
    if body.get("identifier", ex.identifier) != ex.identifier:
        raise fail(standin, "bad_request", "the identifier of an execution cannot change")
    if body.get("status", ex.status) != ex.status:
        raise fail(standin, "bad_request", "the status of an execution cannot be set")
    name = body.get("name")
    timeout = body.get("timeout")
    if name is not None and not isinstance(name, str):
        raise fail(standin, "invalid_input", "name must be a string")
    if timeout is not None and (not isinstance(timeout, int) or timeout < 0):
        raise fail(standin, "invalid_input", "timeout must be a non-negative integer")
    standin.engine.update(ex, name, timeout)
    if standin.dialect == "vip":
        return h.send_json(200, execution_json(standin, ex))
    h.send_empty(204)


# -- data ----------------------------------------------------------------------------
def paths(h: Handler, standin: CarminStandin, method: str, raw: str, query: dict) -> None:
    try:
        path = unquote(raw or "/", errors="strict")
        return path_operation(h, standin, method, path, query)
    except UnicodeDecodeError:
        raise fail(standin, "bad_path", "the path is not UTF-8") from None
    except TooLarge as e:
        h.close_connection = True
        raise fail(standin, "too_large", e.message) from None
    except DataError as e:
        h.drain()
        raise fail(standin, DATA_KINDS[e.kind], e.message) from None


def path_operation(h: Handler, standin: CarminStandin, method: str, path: str, query: dict) -> None:
    data = standin.data
    if method == "GET":
        action = query.get("action")
        if action == "exists":
            return h.send_json(200, {"exists": data.exists(path)})
        if action == "properties":
            return h.send_json(200, standin.path_json(path))
        if action == "list":
            listing = data.listing(path)
            return h.send_json(200, [standin.path_json(p["path"]) for p in listing])
        if action == "md5":
            if standin.dialect == "vip":
                raise fail(standin, "bad_request", "Not implemented")
            return h.send_json(200, {"md5": data.md5(path)})
        if action == "content":
            return download(h, standin, path)
        raise fail(standin, "bad_request", f"action must be one of {', '.join(ACTIONS)}")
    if method == "DELETE":
        data.delete(path)
        return h.send_empty(204)
    if method != "PUT":
        raise fail(standin, "not_allowed", f"{method} is not allowed on a path")
    ctype = h.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not h.has_body():
        data.mkdir(path)
    elif ctype == "application/carmin+json":
        upload_json(h, standin, path)
    else:
        data.write_stream(path, h.body_chunks(), standin.content_limit)
    location = {"Location": standin.content_url(data.normal(path)).split("?")[0]}
    if standin.dialect == "vip":
        return h.send_empty(201, location)
    h.send_json(201, standin.path_json(path), location)


def upload_json(h: Handler, standin: CarminStandin, path: str) -> None:
    limit = standin.content_limit * 4 // 3 + 4096 if standin.content_limit else 64 << 20
    body = h.read_json(limit)
    if not isinstance(body, dict) or not isinstance(body.get("base64Content"), str):
        raise fail(standin, "bad_request", "base64Content (a string) is required")
    kind = body.get("type")
    if kind not in ("File", "Archive"):
        raise fail(standin, "bad_request", "type must be File or Archive")
    try:
        content = base64.b64decode(body["base64Content"], validate=True)
    except (binascii.Error, ValueError):
        raise fail(standin, "bad_request", "base64Content is not base64") from None
    if standin.content_limit is not None and len(content) > standin.content_limit:
        raise TooLarge(standin.content_limit)
    md5 = body.get("md5")
    if md5 is not None and (not isinstance(md5, str) or hashlib.md5(content).hexdigest() != md5):
        raise fail(standin, "bad_request", "the content does not match its md5")
    if kind == "File":
        standin.data.write_bytes(path, content)
    else:
        standin.data.extract_zip(path, content)


def download(h: Handler, standin: CarminStandin, path: str) -> None:
    local = standin.data.existing(path)
    limit = standin.content_limit
    too_large = fail(standin, "too_large", f"the content exceeds {limit} bytes a request")
    if local.is_dir():
        tarball = standin.data.tarball(path, standin.scratch)
        try:
            h.send_file(tarball, f"{local.name}.tar.gz", limit, too_large)
        finally:
            tarball.unlink(missing_ok=True)
    else:
        h.send_file(local, local.name, limit, too_large)
