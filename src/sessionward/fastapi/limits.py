"""Per-route rate limits as a dependency, beside the middleware.

    @app.post("/orders", dependencies=[Depends(sw.limit("5/minute", key=by_user))])

``key`` names who is counted from the request (a :data:`~sessionward.web.limits.KeyFunc`,
or one of the factories below given the ward); ``None`` from it means nobody: pass. A refusal
is 429 ``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.requests import Request

from ..limits import FailMode, parse_policy
from ..ward import Ward
from ..web.limits import KeyFunc
from ..web.limits import by_ip as _by_ip
from ..web.limits import by_session as _by_session
from ..web.limits import by_user as _by_user

KeyFactory = Callable[[Ward], KeyFunc]


class HasWard(Protocol):
    @property
    def ward(self) -> Ward: ...


def by_user(ward: Ward) -> KeyFunc:
    """Count by the access token's user; requests without one by client address."""
    return _by_user(ward.auth.tokens.verify, _by_ip(ward.settings.trusted_proxies))


def by_session(ward: Ward) -> KeyFunc:
    """Count by the access token's session; requests without one by client address."""
    return _by_session(ward.auth.tokens.verify, _by_ip(ward.settings.trusted_proxies))


def by_ip(ward: Ward) -> KeyFunc:
    """Count by client address (``X-Forwarded-For`` only from trusted proxies)."""
    return _by_ip(ward.settings.trusted_proxies)


def route_limit(
    owner: HasWard, policy: str, *, key: KeyFactory = by_ip, name: str | None = None,
    fail: FailMode = "closed",
) -> Callable[[Request], Awaitable[None]]:  # fmt: skip
    parsed = parse_policy(policy)  # a typo fails at import, not at the first request

    async def check(request: Request) -> None:
        ward = owner.ward
        identity = await key(ward)(request)
        if identity is None:
            return
        scope = name or f"route:{request.method}:{route_path(request)}"
        await ward.limits.enforce(f"{scope}:{identity}", parsed, fail=fail)

    return check


def route_path(request: Request) -> str:
    """The matched route's path template, with the prefix it was included under.

    FastAPI 0.165 hands the route its path relative to its router, so the same router
    included under ``/a`` and ``/b`` would share one count. The prefix is what the request's
    path has before the route's own part, rendered with its parameters.
    """
    relative = getattr(request.scope.get("route"), "path", None)
    path = request.scope.get("path", "")
    if not isinstance(relative, str) or not isinstance(path, str):
        return request.url.path
    rendered = relative
    for param, value in request.path_params.items():
        pattern = r"\{" + re.escape(param) + r"(:[^}]*)?\}"
        rendered = re.sub(pattern, str(value).replace("\\", "\\\\"), rendered)
    if not path.endswith(rendered):  # e.g. a converter that rewrote the value: no prefix known
        return relative
    return path[: len(path) - len(rendered)] + relative
