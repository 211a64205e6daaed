"""`CarminClient`: the CARMIN API from scripts and notebooks, blocking.

Why so thin: requests are built and answers read in `egi_hub.carmin.protocol` (plans),
downloads and uploads decided in `egi_hub.carmin.transfer`, retries in
`egi_hub.carmin.retry`; this module moves bytes with ``httpx.Client`` and drives the
plans. `egi_hub.carmin.aclient` is its async twin, line for line.

Redirects are not followed (the API key is a custom header httpx would carry to another
host); a redirect becomes a one-line error. Every answer is read through a `Body`
(`egi_hub.carmin.answers`): bounded in size and in time, whatever the platform sends.
A verified download asks the platform's md5 in a worker thread while the bytes come
(one shared ``httpx.Client`` is safe across threads).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path as LocalPath
from typing import Any, BinaryIO, TypeVar

import httpx

from egi_hub._version import __version__
from egi_hub.carmin.answers import DEADLINE, MAX_ERROR, MAX_JSON, Body
from egi_hub.carmin.credentials import TokenSource, platform_url, resolve_credentials
from egi_hub.carmin.errors import CarminError, error_from_response
from egi_hub.carmin.models import Execution, Path, Pipeline, Platform
from egi_hub.carmin.protocol import Calls, Plan, Request, Response
from egi_hub.carmin.retry import Incomplete, RetryPolicy, give_up
from egi_hub.carmin.transfer import Download, Progress, Upload
from egi_hub.names import CONTROL

__all__ = ["CarminClient", "source_request"]

T = TypeVar("T")
USER_AGENT = f"egi-hub-carmin/{__version__}"
DEFAULT_TIMEOUT = 30.0


def source_request(calls: Calls, source: str | Path) -> tuple[str, dict[str, str], str]:
    """(URL, query, platform path or "") of a download: a `Path`, a platform path, or a
    returned file's absolute URL (refused, before any request, when it holds control
    characters or cannot be read; one on another host gets no credentials)."""
    if isinstance(source, Path):
        source = source.platform_path
    if source.startswith(("http://", "https://")):
        try:
            if CONTROL.search(source):
                raise httpx.InvalidURL("control characters")
            httpx.URL(source)
        except httpx.InvalidURL as e:
            raise CarminError(
                None, None, f"the platform returned an unusable file URL {source[:80]!r} ({e})"
            ) from None
        return source, {}, ""
    request = calls.path_request("GET", source, action="content")
    return calls.target(request), request.params, source


class CarminClient:
    """A CARMIN 0.3.1 platform (VIP's dialect too), blocking calls.

    ``url``: the platform's base URL (else ``$CARMIN_URL``, else VIP's). Credentials: see
    `egi_hub.carmin.credentials`. ``dialect``: ``"auto"`` (asks ``/platform``),
    ``"carmin"`` or ``"vip"``. ``timeout``: seconds per network operation. ``retries``:
    further attempts after a transient failure (``policy`` gives the whole policy).
    ``deadline``: seconds one answer may take in all (its bytes may trickle).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        api_key_file: str | os.PathLike[str] | None = None,
        token: TokenSource = None,
        dialect: str = "auto",
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        policy: RetryPolicy | None = None,
        deadline: float = DEADLINE,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        credentials = resolve_credentials(api_key, api_key_file, token)
        self.calls = Calls(platform_url(url), credentials, dialect)
        self.policy = policy or RetryPolicy(attempts=max(1, retries + 1))
        self.deadline = deadline
        self._http = httpx.Client(
            timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT}
        )
        self._pool: ThreadPoolExecutor | None = None  # for checksums asked during downloads

    def __repr__(self) -> str:
        dialect = self.calls.dialect.name if self.calls.dialect else "auto"
        return f"CarminClient({self.url!r}, dialect={dialect}, {self.calls.credentials!r})"

    @property
    def url(self) -> str:
        return self.calls.url

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> CarminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------

    def _exchange(self, method: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        """``send()`` until it gives an answer worth keeping, by the retry policy."""
        failures = 0
        while True:
            try:
                r = send()
            except httpx.TransportError as e:
                failures += 1
                wait = self.policy.after_error(method, e, failures)
                if wait is None:
                    raise give_up(e, failures, self.url) from None
                self.policy.sleep(wait)
                continue
            wait = self.policy.after_status(
                method, r.status_code, failures, r.headers.get("retry-after")
            )
            if wait is None:
                return r
            failures += 1
            r.close()
            self.policy.sleep(wait)

    def _fetch(
        self, method: str, url: str, *, limit: int = MAX_JSON, tail: bool = False, **kw: Any
    ) -> httpx.Response:
        """One attempt: the answer, its body read within limits (`Body`)."""
        sent = self._http.build_request(method, url, **kw)
        r = self._http.send(sent, stream=True)
        try:
            body = Body(r.status_code, limit, tail=tail, deadline=self.deadline)
            for chunk in r.iter_bytes():
                if not body.add(chunk):
                    break
        finally:
            r.close()
        return httpx.Response(r.status_code, headers=r.headers, content=body.bytes())

    def _send(self, request: Request) -> Response:
        r = self._exchange(
            request.method,
            lambda: self._fetch(
                request.method,
                self.calls.target(request),
                limit=request.limit,
                tail=request.tail,
                params=request.params,
                json=request.json,
                headers=self.calls.headers(request),
            ),
        )
        return Response(r.status_code, r.headers, r.content)

    def _run(self, plan: Plan[T]) -> T:
        """Drive a plan: send what it yields, give it the answers (or the errors)."""
        try:
            request = next(plan)
            while True:
                try:
                    response = self._send(request)
                except CarminError as e:
                    request = plan.throw(e)
                else:
                    request = plan.send(response)
        except StopIteration as done:
            return done.value

    # -- platform -----------------------------------------------------------------------

    def platform(self) -> Platform:
        return self._run(self.calls.platform())

    def authenticate(self, username: str, password: str) -> tuple[str, str]:
        return self._run(self.calls.authenticate(username, password))

    def detect_dialect(self) -> str:
        """``"carmin"`` or ``"vip"`` (asks the platform once when auto-detecting)."""
        return self._run(self.calls.ensure_dialect()).name

    # -- pipelines --------------------------------------------------------------------

    def pipelines(
        self, study: str | None = None, prop: str | None = None, value: str | None = None
    ) -> list[Pipeline]:
        return self._run(self.calls.pipelines(study, prop, value))

    def pipeline(self, identifier: str) -> Pipeline:
        return self._run(self.calls.pipeline(identifier))

    def boutiques(self, identifier: str) -> dict[str, Any]:
        return self._run(self.calls.boutiques(identifier))

    # -- executions -------------------------------------------------------------------

    def executions(
        self, study: str | None = None, offset: int | None = None, limit: int | None = None
    ) -> list[Execution]:
        return self._run(self.calls.executions(study, offset, limit))

    def count_executions(self, study: str | None = None) -> int:
        return self._run(self.calls.count_executions(study))

    def execution(self, identifier: str) -> Execution:
        return self._run(self.calls.execution(identifier))

    def create_execution(
        self, pipeline: str, inputs: Mapping[str, Any], name: str | None = None, **kw: Any
    ) -> Execution:
        """Launch ``pipeline``; keywords: ``timeout``, ``study``, ``results_location``,
        ``play`` (default True: play it when the platform left it Initializing)."""
        return self._run(self.calls.create_execution(pipeline, inputs, name, **kw))

    def update_execution(
        self, identifier: str, *, name: str | None = None, timeout: int | None = None
    ) -> None:
        return self._run(self.calls.update_execution(identifier, name=name, timeout=timeout))

    def play(self, identifier: str) -> None:
        return self._run(self.calls.play(identifier))

    def kill(self, identifier: str) -> None:
        return self._run(self.calls.kill(identifier))

    def delete_execution(self, identifier: str, delete_files: bool = False) -> None:
        return self._run(self.calls.delete_execution(identifier, delete_files))

    def results(self, identifier: str) -> list[Path]:
        return self._run(self.calls.results(identifier))

    def stdout(self, identifier: str) -> str:
        return self._run(self.calls.stdout(identifier))

    def stderr(self, identifier: str) -> str:
        return self._run(self.calls.stderr(identifier))

    # -- data -------------------------------------------------------------------------

    def list(self, path: str) -> list[Path]:
        return self._run(self.calls.list(path))

    def exists(self, path: str) -> bool:
        return self._run(self.calls.exists(path))

    def properties(self, path: str) -> Path:
        return self._run(self.calls.properties(path))

    def md5(self, path: str) -> str:
        return self._run(self.calls.md5(path))

    def content(self, path: str) -> bytes:
        return self._run(self.calls.content(path))

    def mkdir(self, path: str) -> None:
        return self._run(self.calls.mkdir(path))

    def delete(self, path: str) -> None:
        return self._run(self.calls.delete(path))

    def _checksum_meanwhile(self, path: str) -> Future[str | None]:
        """The platform's md5 of ``path`` (or None), asked in the background."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="carmin-checksum")
        return self._pool.submit(self._run, self.calls.checksum(path))

    def download(
        self,
        source: str | Path,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        verify: bool = True,
    ) -> LocalPath:
        """Stream a platform path (or a returned file's URL) to the file ``dest``;
        ``verify``: compare with the platform's md5 where it offers one."""
        self._run(self.calls.ensure_dialect())
        url, params, platform_path = source_request(self.calls, source)
        verify = self.calls.verifies(verify) and bool(platform_path)
        state = Download(dest, progress, verify=verify)
        expected = self._checksum_meanwhile(platform_path) if verify else None
        try:
            while True:
                request = Request("GET", "", params=params, headers=state.headers(), about="path")
                try:
                    with self._http.stream(
                        "GET", url, params=params, headers=self.calls.headers(request, url)
                    ) as r:
                        if r.status_code not in (200, 206):
                            if not state.retry_status(r.status_code, self.policy):
                                body = Body(r.status_code, MAX_ERROR, deadline=self.deadline)
                                for chunk in r.iter_bytes():
                                    if not body.add(chunk):
                                        break
                                raise error_from_response(r.status_code, body.bytes(), "path")
                            raise Incomplete(f"HTTP {r.status_code}")
                        state.start(r.status_code, r.headers)
                        for chunk in r.iter_bytes():  # as they come: a cut loses none
                            state.write(chunk)
                        state.end()
                    break
                except (httpx.TransportError, Incomplete) as e:
                    if state.complete:
                        break
                    self.policy.sleep(state.failed(e, self.policy, self.url))
            return state.finish(expected.result() if expected else None)
        except BaseException:
            state.abort()
            raise

    def upload(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        path: str,
        *,
        progress: Progress | None = None,
        verify: bool = True,
    ) -> Path | None:
        """Stream the local file ``source`` (or an open binary file) to the platform ``path``
        (replacing it); ``verify``: compare with the platform's md5 where it offers one
        (it reads the whole file again to answer)."""
        self._run(self.calls.ensure_dialect())
        upload = Upload(source, progress, verify=self.calls.verifies(verify))
        request = self.calls.path_request("PUT", path)
        url = self.calls.target(request)
        r = self._exchange(
            "PUT",
            lambda: self._fetch(
                "PUT",
                url,
                content=upload.chunks(),
                headers={**self.calls.headers(request), **upload.headers()},
            ),
        )
        result = self.calls.uploaded(Response(r.status_code, r.headers, r.content))
        if upload.md5:
            upload.check(self._run(self.calls.checksum(path)), path)
        return result
