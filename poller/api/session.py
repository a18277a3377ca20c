"""The run's HTTP session to the API: TLS always verified, the proxy looked up once."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from poller.config.errors import ConfigError
from poller.config.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext:
    # TLS verification is always on; a corporate CA bundle is added, never a bypass.
    context = ssl.create_default_context()
    if settings.ca_bundle:
        try:
            context.load_verify_locations(cafile=settings.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the CA bundle {settings.ca_bundle}: {exc.strerror or exc}."
            ) from None
    return context


def open_session(settings: Settings) -> aiohttp.ClientSession:
    """The run's HTTP session: one connection per request in flight, TLS always verified."""
    # Loading the system's certificate store costs ~2% of a short run's CPU: skipped only for
    # a plain-http endpoint (the simulator or a test server on loopback). Decided on the parsed
    # scheme, never the raw text: "HTTPS://" or " https://" must still verify TLS.
    plain = urlsplit(settings.endpoint.strip()).scheme == "http"
    tls = False if plain else ssl_context(settings)
    connector = aiohttp.TCPConnector(limit=settings.concurrency, ssl=tls)
    proxy, proxy_auth = proxy_for(settings.endpoint)
    return aiohttp.ClientSession(connector=connector, proxy=proxy, proxy_auth=proxy_auth)


def require_credentials(settings: Settings) -> None:
    """`build_settings` refuses to go on without credentials; a hand-made `Settings` may lack
    them, and the client would fail on the first request with no sentence for the user."""
    if settings.credentials is None:
        raise ConfigError(
            "the settings carry no credentials: pass Settings(credentials=Credentials("
            "secret_id, secret_key)), or build them with build_settings(), which reads "
            "TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY."
        )


def proxy_for(endpoint: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy HTTPS_PROXY/HTTP_PROXY/NO_PROXY (and ~/.netrc) name for the endpoint.

    Looked up once per run rather than with `trust_env=True`, which makes aiohttp re-read the
    environment and ~/.netrc on every request: that cost more CPU than signing (benchmarks)."""
    try:
        return get_env_proxy_for_url(URL(endpoint))
    except LookupError:
        return None, None
