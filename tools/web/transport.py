"""The pinned-address transport `web_fetch` sends its requests through.

httpx sees an ordinary transport; underneath, httpcore may only open a TCP
connection to the IP address the policy checked for that (host, port), so a
second DNS answer can never redirect the connection (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.cookiejar
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

import httpcore
import httpx


async def _open_tcp_stream(
    ip: str,
    port: int,
    *,
    timeout: float | None,
    local_address: str | None,
    socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
) -> httpcore.AsyncNetworkStream:
    """Open a TCP connection to an already checked IP address.

    The only place the fetcher opens a socket; tests replace it.
    """
    return await httpcore.AnyIOBackend().connect_tcp(
        ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options
    )


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects each (host, port) only to the IP address that was checked for it.

    httpcore still sees the URL's host name, so the Host header, TLS SNI and
    certificate verification all use the name, while the socket goes to the
    pinned address and no second DNS lookup happens.
    """

    def __init__(self, pins: dict[tuple[str, int], str]) -> None:
        self._pins = pins

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        ip = self._pins.get((host, port))
        if ip is None:
            raise httpcore.ConnectError(f"no checked address for {host}:{port}")
        return await _open_tcp_stream(
            ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise httpx.TimeoutException(str(exc)) from exc
    except httpcore.ConnectError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except httpcore.NetworkError as exc:
        raise httpx.NetworkError(str(exc)) from exc
    except (httpcore.ProtocolError, httpcore.UnsupportedProtocol, httpcore.ProxyError) as exc:
        raise httpx.ProtocolError(str(exc)) from exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool that may only reach pinned addresses."""

    def __init__(self, pins: dict[tuple[str, int], str], ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            network_backend=_PinnedBackend(pins),
            max_connections=4,
            http1=True,
            http2=False,
            retries=0,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` over a connection to its pinned address."""
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        if not isinstance(response.stream, AsyncIterable):
            raise httpx.ProtocolError("the connection pool returned a synchronous stream")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the pool's connections."""
        await self._pool.aclose()


def no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that keeps nothing."""
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """Httpx's TLS defaults: certifi's CA bundle (or SSL_CERT_FILE/SSL_CERT_DIR), verified."""
    return httpx.create_ssl_context()
