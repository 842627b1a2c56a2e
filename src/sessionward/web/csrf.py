"""CSRF defence for requests whose credential is a cookie: the request must come from the
app's own origin (or one it trusts).

Browsers send ``Origin`` on every request whose method is not GET or HEAD (the Fetch
standard), and a page cannot forge it; so an unsafe request authenticated by a cookie is
accepted only when its ``Origin`` is the request's own origin or a trusted one. Without
``Origin``, ``Sec-Fetch-Site: same-origin`` (a browser's word, equally unforgeable) is
accepted; with neither the request is refused. Requests with a bearer header need no check:
a browser never adds that header on its own.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from .errors import ApiError

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_origin(text: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` as (scheme, host, port); None for anything else."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def same_origin(conn: HTTPConnection, trusted: Collection[str] = ()) -> bool:
    """Whether ``conn`` comes from its own origin or one of ``trusted``."""
    origin = conn.headers.get("origin")
    if origin is None:
        return conn.headers.get("sec-fetch-site") == "same-origin"
    seen = normal_origin(origin)
    if seen is None:  # "null" (sandboxed frames, some redirects) or garbage
        return False
    own = normal_origin(f"{conn.url.scheme}://{conn.url.netloc}")
    return seen == own or seen in {normal_origin(t) for t in trusted}


def csrf_failed() -> ApiError:
    return ApiError(
        403, "csrf_failed", "A request authenticated by a cookie must come from the app's origin."
    )


def check_csrf(conn: HTTPConnection, method: str, trusted: Collection[str] = ()) -> None:
    """Raise 403 ``csrf_failed`` for an unsafe ``method`` from another origin."""
    if method.upper() in UNSAFE and not same_origin(conn, trusted):
        raise csrf_failed()
