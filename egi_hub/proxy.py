"""The local stack's proxy: PyPI's configurable-http-proxy with its handler fixed.

``python -m egi_hub.proxy`` takes exactly the options of ``configurable-http-proxy``
(JupyterHub's ``ConfigurableHTTPProxy`` starts it the same way). Its handler
(configurable-http-proxy 0.4) re-quotes the decoded request path, so a user's URL with
``@`` in it (``/user/bob@egi.eu/``, a Check-in username) reaches the server as
``/user/bob%40egi.eu/`` and is not found: the path is forwarded here exactly as the
client sent it. Its websocket handling needs three fixes for JupyterLab's kernels:

1. It never answers the browser's ``Sec-WebSocket-Protocol``, while it forwards the
   offer to the single-user server, which picks ``v1.kernel.websocket.jupyter.org``:
   the two ends then speak different kernel protocols and cells never run. The
   handler here accepts the subprotocol the upstream server selected.
2. It forwards binary frames from the browser as text frames.
3. It drops upstream messages that arrive before the browser's handshake completes
   (the server replays buffered kernel messages at once on reconnect). They are held
   here and sent as soon as the connection is open; and when the server closes its
   end, the browser's end is closed too, so JupyterLab reconnects.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from configurable_http_proxy import cli, configproxy, handlers
from tornado.concurrent import Future
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect

__all__ = ["WebsocketFixProxyHandler", "main"]


class WebsocketFixProxyHandler(handlers.ProxyHandler):
    """`ProxyHandler` that negotiates subprotocols and keeps every websocket frame."""

    def initialize(self, **kwargs: Any) -> None:
        super().initialize(**kwargs)
        self._opened = False
        self._early: list[tuple[str | bytes, bool]] = []

    async def get_target_url(self, path: str | None) -> str | None:
        if not self.proxy.include_prefix:
            return await super().get_target_url(path)
        self.target = self.proxy.target_for_req(None, path)
        if self.target is None:
            await self.handle_proxy_error(404, err=None)
            return None
        target = urlparse(self.target["target"])
        raw_path = self.request.path  # as the client sent it, still percent-encoded
        if self.proxy.prepend_path:
            queries = [q for q in (target.query, self.request.query) if q]
            target = target._replace(
                path=target.path.rstrip("/") + "/" + raw_path.lstrip("/"),
                query="&".join(queries),
            )
        else:
            target = target._replace(path=raw_path, query=self.request.query)
        return target.geturl()

    async def start_ws_client(self, path: str | None = None) -> None:
        self.closed = False
        url = await self.get_target_url(path)
        if url is None:
            return
        parsed = urlparse(url)
        url = parsed._replace(scheme=parsed.scheme.replace("http", "ws")).geturl()

        def relay(message: str | bytes | None) -> None:
            if message is None:  # the server closed its end
                self.close()
                return
            if self.closed:
                return
            prefix = self.target["prefix"] if self.target else ""
            if prefix:
                self.proxy.update_last_activity(prefix)
            self.write_message(message, binary=isinstance(message, bytes))

        request = self._get_proxy_request(url)
        try:
            self.ws_client = await handlers.apply_timeout(
                self.proxy.timeout, websocket_connect(request, on_message_callback=relay)
            )
        except HTTPClientError as err:
            self.set_status(err.code)
            self.write(err.message)
            self.finish()
        except Exception as err:
            await self.handle_proxy_error(503, err)
            raise

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        # Called during the browser handshake, after the upstream connection is made.
        chosen = getattr(self.ws_client, "selected_subprotocol", None)
        return chosen if chosen in subprotocols else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        self._opened = True
        early, self._early = self._early, []
        for message, binary in early:
            super().write_message(message, binary=binary)

    def write_message(self, message: Any, binary: bool = False) -> Future[None]:
        if not self._opened:
            self._early.append((message, binary))
            done: Future[None] = Future()
            done.set_result(None)
            return done
        return super().write_message(message, binary=binary)

    def on_message(self, message: str | bytes) -> None:
        if self.ws_client:
            prefix = self.target["prefix"] if self.target else ""
            if prefix:
                self.proxy.update_last_activity(prefix)
            self.ws_client.write_message(message, binary=isinstance(message, bytes))


def main() -> None:
    """Run configurable-http-proxy's command line with the fixed handler."""
    configproxy.ProxyHandler = WebsocketFixProxyHandler
    cli.main()


if __name__ == "__main__":
    main()
