"""ASGI rate-limit middleware for any Starlette or FastAPI app.

    app = FastAPI()
    app.add_middleware(
        RateLimitMiddleware,
        limiter=lambda scope: ward.limits,
        rules=[
            Rule("/v1/health", None),                                 # exempt
            Rule("/v1/auth/*", "20/second;600/minute", key=by_ip(), name="ip"),
            Rule("/*", "50/second;1500/minute", key=by_user(ward.auth.tokens.verify), name="api"),
        ],
    )

(``tests/limits/test_middleware_example.py`` runs this example.)

The first rule whose path (exact, or a prefix ending in ``*``) and methods match decides.
Its key function names who is counted (``None``: nobody, pass); the store key is
``<rule name>:<identity>``. Every limited response carries the IETF draft headers
(``RateLimit-Policy: "api";q=50;w=1`` and ``RateLimit: "api";r=42;t=1``); a refused one is
429 ``rate_limited`` with ``Retry-After``. If the store fails, a rule with ``fail="open"``
lets the request through (counted in the limiter's stats) and one with ``fail="closed"``
answers 503 ``store_unavailable``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidToken, StorageError
from ..limits import Decision, FailMode, Policy, RateLimiter, parse_policy
from .client import Network, client_ip
from .problem import error_response

KeyFunc = Callable[[Request], Awaitable[str | None]]
LimiterSource = RateLimiter | Callable[[Scope], RateLimiter]


def by_ip(trusted_proxies: Sequence[Network] = ()) -> KeyFunc:
    """Count by client address: the socket peer, or ``X-Forwarded-For`` from trusted proxies
    (``ipaddress.ip_network("10.0.0.0/8")``, as ``Settings.trusted_proxies`` holds them).
    Requests with no usable address (no peer, as behind a Unix socket) share the one key
    ``ip:unknown``: counted together, never let through uncounted."""

    async def key(request: Request) -> str:
        return f"ip:{client_ip(request, trusted_proxies) or 'unknown'}"

    return key


def _bearer_claims(request: Request, verify: Callable[[str], object]) -> object | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        return verify(token.strip())
    except InvalidToken:
        return None


def by_user(verify: Callable[[str], object], fallback: KeyFunc | None = None) -> KeyFunc:
    """Count by the bearer token's user (``sub``); requests without a valid token go to
    ``fallback`` (default: by IP). ``verify`` checks the JWT, e.g. ``ward.auth.tokens.verify``;
    the session itself is checked later by the endpoint."""
    return _by_claim(verify, fallback, "user_id", "user")


def by_session(verify: Callable[[str], object], fallback: KeyFunc | None = None) -> KeyFunc:
    """Count by the bearer token's session (``sid``); like :func:`by_user` otherwise."""
    return _by_claim(verify, fallback, "session_id", "session")


def _by_claim(verify: Callable[[str], object], fallback: KeyFunc | None, claim: str,
              label: str) -> KeyFunc:  # fmt: skip
    """Count by one claim of a valid bearer token, as ``<label>:<value>``; else ``fallback``."""
    other = fallback or by_ip()

    async def key(request: Request) -> str | None:
        value = getattr(_bearer_claims(request, verify), claim, None)
        return f"{label}:{value}" if value else await other(request)

    return key


def by_route(inner: KeyFunc) -> KeyFunc:
    """Count each path separately for the same identity."""

    async def key(request: Request) -> str | None:
        identity = await inner(request)
        return None if identity is None else f"{request.url.path}|{identity}"

    return key


@dataclass(frozen=True)
class Rule:
    path: str
    policy: Policy | str | None
    key: KeyFunc | None = None
    methods: frozenset[str] | None = None
    fail: FailMode = "closed"
    name: str = "default"

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limiter: LimiterSource, rules: Sequence[Rule]) -> None:
        self.app = app
        self._limiter = limiter
        self._rules = [
            (rule, None if rule.policy is None else parse_policy(rule.policy, rule.name))
            for rule in rules
        ]
        self._default_key = by_ip()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = next((r for r in self._rules if r[0].matches(scope["method"], scope["path"])), None)
        if found is None or found[1] is None:
            await self.app(scope, receive, send)
            return
        rule, policy = found
        assert policy is not None
        identity = await (rule.key or self._default_key)(Request(scope))
        if identity is None:
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, rule, policy, _key(rule.name, identity))

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, rule: Rule, policy: Policy, key: str
    ) -> None:
        limiter = self._limiter if isinstance(self._limiter, RateLimiter) else self._limiter(scope)
        try:
            decision = await limiter.hit(key, policy, fail=rule.fail)
        except StorageError:
            response = error_response(503, "store_unavailable", "The rate limiter's store is "
                                      "unavailable; try again shortly.", retry_after=1)  # fmt: skip
            await response(scope, receive, send)
            return
        headers = rate_limit_headers(decision)
        if not decision.allowed:
            response = error_response(
                429,
                "rate_limited",
                "Too many requests.",
                retry_after=decision.retry_after,
                headers=headers,
            )
            await response(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in headers.items():
                    response_headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


def _key(name: str, identity: str) -> str:
    key = f"{name}:{identity}"
    if len(key) <= 200:
        return key
    # A client controls the path (by_route) and so the identity's length: a long one is
    # counted under its digest, never refused as a bad key.
    return f"{name}:sha256:{hashlib.sha256(identity.encode('utf-8', 'surrogatepass')).hexdigest()}"


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The IETF draft's ``RateLimit-Policy`` and ``RateLimit`` fields for a decision."""
    policy = decision.policy
    names = [_item_name(policy, n) for n in range(len(policy.limits))]
    if len(set(names)) < len(names):  # two limits with one window: number them instead
        names = [f"{policy.name}-{n + 1}" for n in range(len(names))]
    quota = ", ".join(
        f'"{name}";q={limit.count};w={_seconds(limit.window)}'
        for name, limit in zip(names, policy.limits, strict=True)
    )
    state = decision.per_limit or ((decision.remaining, decision.reset_after),)
    current = ", ".join(
        f'"{name}";r={remaining};t={math.ceil(reset)}'
        for name, (remaining, reset) in zip(names, state, strict=False)
    )
    return {"RateLimit-Policy": quota, "RateLimit": current}


def _item_name(policy: Policy, n: int) -> str:
    if len(policy.limits) == 1:
        return policy.name
    return f"{policy.name}-{_seconds(policy.limits[n].window)}s"


def _seconds(window: float) -> str:
    return str(int(window)) if window == int(window) else f"{window:g}"
