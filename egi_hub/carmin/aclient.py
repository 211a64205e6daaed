"""`AsyncCarminClient`: the CARMIN API without blocking the event loop.

Why a twin: the magics follow executions while the kernel stays free, so they need
``await``. This is `egi_hub.carmin.client` line for line with ``httpx.AsyncClient``:
the same plans (`egi_hub.carmin.protocol`), transfer state (`egi_hub.carmin.transfer`)
and retry policy (its ``asleep``). Local file reads and writes of transfers stay
synchronous: a chunk at a time, they are short next to the network (checksums are
computed by a worker thread, and a verified download asks the platform's md5 in a task
while the bytes come).

Redirects are not followed (the API key is a custom header httpx would carry to another
host); a redirect becomes a one-line error. Every answer is read through a `Body`
(`egi_hub.carmin.answers`): bounded in size and in time, whatever the platform sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path as LocalPath
from typing import Any, BinaryIO, TypeVar

import httpx

from egi_hub.carmin.answers import DEADLINE, MAX_ERROR, MAX_JSON, Body
from egi_hub.carmin.client import DEFAULT_TIMEOUT, USER_AGENT, source_request
from egi_hub.carmin.credentials import TokenSource, platform_url, resolve_credentials
from egi_hub.carmin.errors import CarminError, error_from_response
from egi_hub.carmin.models import Execution, Path, Pipeline, Platform
from egi_hub.carmin.protocol import Calls, Plan, Request, Response
from egi_hub.carmin.retry import Incomplete, RetryPolicy, give_up
from egi_hub.carmin.transfer import Download, Progress, Upload

__all__ = ["AsyncCarminClient"]

T = TypeVar("T")


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class AsyncCarminClient:
    """A CARMIN 0.3.1 platform (VIP's dialect too), awaitable calls (see `CarminClient`).

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        credentials = resolve_credentials(api_key, api_key_file, token)
        self.calls = Calls(platform_url(url), credentials, dialect)
        self.policy = policy or RetryPolicy(attempts=max(1, retries + 1))
        self.deadline = deadline
        self._http = httpx.AsyncClient(
            timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT}
        )

    def __repr__(self) -> str:
        dialect = self.calls.dialect.name if self.calls.dialect else "auto"
        return f"AsyncCarminClient({self.url!r}, dialect={dialect}, {self.calls.credentials!r})"

    @property
    def url(self) -> str:
        return self.calls.url

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncCarminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- transport --------------------------------------------------------------------

    async def _exchange(
        self, method: str, send: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        """``send()`` until it gives an answer worth keeping, by the retry policy."""
        failures = 0
        while True:
            try:
                r = await send()
            except httpx.TransportError as e:
                failures += 1
                wait = self.policy.after_error(method, e, failures)
                if wait is None:
                    raise give_up(e, failures, self.url) from None
                await self.policy.asleep(wait)
                continue
            wait = self.policy.after_status(
                method, r.status_code, failures, r.headers.get("retry-after")
            )
            if wait is None:
                return r
            failures += 1
            await r.aclose()
            await self.policy.asleep(wait)

    async def _fetch(
        self, method: str, url: str, *, limit: int = MAX_JSON, tail: bool = False, **kw: Any
    ) -> httpx.Response:
        """One attempt: the answer, its body read within limits (`Body`)."""
        sent = self._http.build_request(method, url, **kw)
        r = await self._http.send(sent, stream=True)
        try:
            body = Body(r.status_code, limit, tail=tail, deadline=self.deadline)
            async for chunk in r.aiter_bytes():
                if not body.add(chunk):
                    break
        finally:
            await r.aclose()
        return httpx.Response(r.status_code, headers=r.headers, content=body.bytes())

    async def _send(self, request: Request) -> Response:
        r = await self._exchange(
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

    async def _run(self, plan: Plan[T]) -> T:
        """Drive a plan: send what it yields, give it the answers (or the errors)."""
        try:
            request = next(plan)
            while True:
                try:
                    response = await self._send(request)
                except CarminError as e:
                    request = plan.throw(e)
                else:
                    request = plan.send(response)
        except StopIteration as done:
            return done.value

    # -- platform -----------------------------------------------------------------------

    async def platform(self) -> Platform:
        return await self._run(self.calls.platform())

    async def authenticate(self, username: str, password: str) -> tuple[str, str]:
        return await self._run(self.calls.authenticate(username, password))

    async def detect_dialect(self) -> str:
        """``"carmin"`` or ``"vip"`` (asks the platform once when auto-detecting)."""
        return (await self._run(self.calls.ensure_dialect())).name

    # -- pipelines --------------------------------------------------------------------

    async def pipelines(
        self, study: str | None = None, prop: str | None = None, value: str | None = None
    ) -> list[Pipeline]:
        return await self._run(self.calls.pipelines(study, prop, value))

    async def pipeline(self, identifier: str) -> Pipeline:
        return await self._run(self.calls.pipeline(identifier))

    async def boutiques(self, identifier: str) -> dict[str, Any]:
        return await self._run(self.calls.boutiques(identifier))

    # -- executions -------------------------------------------------------------------

    async def executions(
        self, study: str | None = None, offset: int | None = None, limit: int | None = None
    ) -> list[Execution]:
        return await self._run(self.calls.executions(study, offset, limit))

    async def count_executions(self, study: str | None = None) -> int:
        return await self._run(self.calls.count_executions(study))

    async def execution(self, identifier: str) -> Execution:
        return await self._run(self.calls.execution(identifier))

    async def create_execution(
        self, pipeline: str, inputs: Mapping[str, Any], name: str | None = None, **kw: Any
    ) -> Execution:
        """Launch ``pipeline``; keywords: ``timeout``, ``study``, ``results_location``,
        ``play`` (default True: play it when the platform left it Initializing)."""
        return await self._run(self.calls.create_execution(pipeline, inputs, name, **kw))

    async def update_execution(
        self,
        identifier: str,
        *,
        name: str | None = None,
        timeout: int | None = None,  # noqa: ASYNC109 (the execution's, in seconds)
    ) -> None:
        return await self._run(self.calls.update_execution(identifier, name=name, timeout=timeout))

    async def play(self, identifier: str) -> None:
        return await self._run(self.calls.play(identifier))

    async def kill(self, identifier: str) -> None:
        return await self._run(self.calls.kill(identifier))

    async def delete_execution(self, identifier: str, delete_files: bool = False) -> None:
        return await self._run(self.calls.delete_execution(identifier, delete_files))

    async def results(self, identifier: str) -> list[Path]:
        return await self._run(self.calls.results(identifier))

    async def stdout(self, identifier: str) -> str:
        return await self._run(self.calls.stdout(identifier))

    async def stderr(self, identifier: str) -> str:
        return await self._run(self.calls.stderr(identifier))

    # -- data -------------------------------------------------------------------------

    async def list(self, path: str) -> list[Path]:
        return await self._run(self.calls.list(path))

    async def exists(self, path: str) -> bool:
        return await self._run(self.calls.exists(path))

    async def properties(self, path: str) -> Path:
        return await self._run(self.calls.properties(path))

    async def md5(self, path: str) -> str:
        return await self._run(self.calls.md5(path))

    async def content(self, path: str) -> bytes:
        return await self._run(self.calls.content(path))

    async def mkdir(self, path: str) -> None:
        return await self._run(self.calls.mkdir(path))

    async def delete(self, path: str) -> None:
        return await self._run(self.calls.delete(path))

    async def download(
        self,
        source: str | Path,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        verify: bool = True,
    ) -> LocalPath:
        """Stream a platform path (or a returned file's URL) to the file ``dest``;
        ``verify``: compare with the platform's md5 where it offers one."""
        await self._run(self.calls.ensure_dialect())
        url, params, platform_path = source_request(self.calls, source)
        verify = self.calls.verifies(verify) and bool(platform_path)
        state = Download(dest, progress, verify=verify)
        expected = (
            asyncio.ensure_future(self._run(self.calls.checksum(platform_path))) if verify else None
        )
        try:
            while True:
                request = Request("GET", "", params=params, headers=state.headers(), about="path")
                try:
                    async with self._http.stream(
                        "GET", url, params=params, headers=self.calls.headers(request, url)
                    ) as r:
                        if r.status_code not in (200, 206):
                            if not state.retry_status(r.status_code, self.policy):
                                body = Body(r.status_code, MAX_ERROR, deadline=self.deadline)
                                async for chunk in r.aiter_bytes():
                                    if not body.add(chunk):
                                        break
                                raise error_from_response(r.status_code, body.bytes(), "path")
                            raise Incomplete(f"HTTP {r.status_code}")
                        state.start(r.status_code, r.headers)
                        async for chunk in r.aiter_bytes():  # as they come: a cut loses none
                            state.write(chunk)
                        state.end()
                    break
                except (httpx.TransportError, Incomplete) as e:
                    if state.complete:
                        break
                    await self.policy.asleep(state.failed(e, self.policy, self.url))
            return state.finish(await expected if expected else None)
        except BaseException:
            state.abort()
            raise
        finally:
            if expected is not None and not expected.done():
                expected.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await expected

    async def upload(
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
        await self._run(self.calls.ensure_dialect())
        upload = Upload(source, progress, verify=self.calls.verifies(verify))
        request = self.calls.path_request("PUT", path)
        url = self.calls.target(request)
        r = await self._exchange(
            "PUT",
            lambda: self._fetch(
                "PUT",
                url,
                content=_aiter(upload.chunks()),
                headers={**self.calls.headers(request), **upload.headers()},
            ),
        )
        result = self.calls.uploaded(Response(r.status_code, r.headers, r.content))
        if upload.md5:
            upload.check(await self._run(self.calls.checksum(path)), path)
        return result
