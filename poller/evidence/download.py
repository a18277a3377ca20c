"""Fetching one file from its signed link into an upload, checked against the answer's MD5 and
size before it is stored.

Downloads have their own HTTP session: their own connection limit and timeouts, so a slow media
host never takes a connection (or a timeout budget) from the API. A failure is one of three
kinds: `RELINK` (the link expired or was refused: only a fresh answer helps), `RETRY` (a bad
body, a 5xx, a timeout: the same link may work next time), `REFUSED` (any other 4xx).

The signed link's query string is a credential for its file. Nothing here formats an aiohttp
exception or a URL into a message: reasons are built from the status, the exception's type and
the link as `shown_url` gives it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import Enum
from typing import Any, Final
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from poller.evidence.fields import Wanted, is_allowed_link, shown_url
from poller.evidence.store import Upload

# Bytes hashed and written at a time, on a worker thread: MD5 and the disk write of a 12 MB
# token's files would otherwise hold the event loop for tens of milliseconds a token, and the
# API requests waiting on it would leave in bunches (throttles). hashlib and os.write let go of
# the GIL for blocks this size, so the loop goes on meanwhile.
BLOCK: Final = 1 << 20
_RELINK: Final = frozenset({401, 403, 404, 410})
_RETRY: Final = frozenset({408, 425, 429})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS: Final = 5
# Smaller blocks cost less to hash in place than a thread hop does.
THREAD_BLOCK: Final = 1 << 18


class Kind(Enum):
    RELINK = "relink"
    RETRY = "retry"
    REFUSED = "refused"


class DownloadFailed(Exception):
    """One download failed; `reason` is safe to show (no query string)."""

    def __init__(self, kind: Kind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def open_download_session(
    *, concurrency: int, timeout: float, tls: ssl.SSLContext | bool
) -> aiohttp.ClientSession:
    """The archive's own session: `concurrency` connections, `timeout` to connect and between
    reads (a stall), no limit on a whole file (a 9 MB video on a slow line takes a while)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, ssl=tls),
        timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout),
        # The bytes the MD5 describes are the file's: a link served with Content-Encoding is
        # decoded by aiohttp as a browser would; no cookies ride along between links.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Read a fast body in large pieces: fewer trips through the loop per megabyte.
        read_bufsize=BLOCK,
    )


async def download(session: aiohttp.ClientSession, item: Wanted, upload: Upload) -> int:
    """Stream `item` into `upload`; returns its size once MD5 and size match (else raises
    `DownloadFailed`; the caller discards the upload)."""
    digest = hashlib.md5()  # noqa: S324 - the answer's checksum, not a security measure
    received = 0
    try:
        async with _follow(session, item.url) as response:
            status = response.status
            if status != 200:
                raise DownloadFailed(_kind_of(status), f"the link answered HTTP {status}")
            block = bytearray()
            async for chunk in response.content.iter_chunked(BLOCK):
                received += len(chunk)
                if received > item.size:
                    raise DownloadFailed(
                        Kind.RETRY, f"the body is longer than the {item.size} bytes stated"
                    )
                block += chunk
                if len(block) >= BLOCK:
                    await _take(digest, upload, bytes(block))
                    block.clear()
            if block:
                await _take(digest, upload, bytes(block))
    except DownloadFailed:
        raise
    except TimeoutError:
        raise DownloadFailed(Kind.RETRY, "the download timed out") from None
    except aiohttp.ClientPayloadError:
        raise DownloadFailed(Kind.RETRY, "the body was cut off (a truncated download)") from None
    except aiohttp.InvalidURL:
        reason = f"the link is not a valid URL ({shown_url(item.url)})"
        raise DownloadFailed(Kind.REFUSED, reason) from None
    except aiohttp.ClientConnectorError as exc:
        raise DownloadFailed(Kind.RETRY, f"cannot connect: {_os_reason(exc)}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise DownloadFailed(Kind.RETRY, f"the download failed ({type(exc).__name__})") from None
    except ValueError:
        # A link no HTTP client can use (a port out of range, an empty host label, a NUL):
        # yarl and aiohttp say so with ValueError or UnicodeError, the link in the message.
        reason = f"the link is not a valid URL ({shown_url(item.url)})"
        raise DownloadFailed(Kind.REFUSED, reason) from None
    if received != item.size:
        raise DownloadFailed(
            Kind.RETRY, f"received {received} bytes where the answer states {item.size}"
        )
    if digest.hexdigest() != item.md5:
        raise DownloadFailed(Kind.RETRY, "the bytes do not match the MD5 the answer states")
    return received


async def _take(digest: Any, upload: Upload, block: bytes) -> None:
    """Hash a block (on a thread when it is large) and hand it to the upload."""
    if len(block) >= THREAD_BLOCK:
        await asyncio.to_thread(digest.update, block)
    else:
        digest.update(block)
    await upload.write(block)


@asynccontextmanager
async def _follow(
    session: aiohttp.ClientSession, url: str
) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET `url`, following redirects only to links as allowed as the first (https, or http
    to a loopback address): a redirect must not lead a download (and its bytes) elsewhere."""
    for _ in range(MAX_REDIRECTS + 1):
        # encoded=True: the link is sent byte for byte as signed (a re-quoted query would no
        # longer match its signature).
        async with session.get(URL(url, encoded=True), allow_redirects=False) as response:
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or location is None:
                yield response
                return
            url = urljoin(url, location)
            if not is_allowed_link(url):
                raise DownloadFailed(
                    Kind.REFUSED, f"the link redirected to one that is not https ({shown_url(url)})"
                )
    raise DownloadFailed(Kind.RETRY, "the link redirected too many times")


def _kind_of(status: int) -> Kind:
    if status in _RELINK:
        return Kind.RELINK
    if status >= 500 or status in _RETRY:
        return Kind.RETRY
    return Kind.REFUSED


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    error = exc.os_error
    return error.strerror or type(error).__name__ if error is not None else type(exc).__name__
