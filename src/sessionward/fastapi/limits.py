"""Per-route rate limits as a dependency, beside the middleware.

    @app.post("/orders", dependencies=[Depends(sw.limit("5/minute", key=by_user))])

``key`` names who is counted from the request (a :data:`~sessionward.web.limits.KeyFunc`,
or one of the factories below given the ward); ``None`` from it means nobody: pass. A refusal
is 429 ``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

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
        path = getattr(request.scope.get("route"), "path", request.url.path)
        scope = name or f"route:{request.method}:{path}"
        await ward.limits.enforce(f"{scope}:{identity}", parsed, fail=fail)

    return check
