"""Settings: one object that carries every tunable.

The library takes a :class:`Settings` through constructors and never reads the environment
itself: ``Settings.defaults()`` (or ``Settings(...)`` with explicit values) is what an app
passes in. The service and the CLI call :meth:`Settings.from_env`, which reads
``SESSIONWARD_*`` variables and turns a bad value into a sentence naming the variable.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    IPvAnyNetwork,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .errors import ConfigurationError
from .rate_policy import parse_policy
from .urls import StoreURL, parse_store_url


def _store_url(value: object) -> StoreURL:
    try:
        return parse_store_url(value)  # type: ignore[arg-type]
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None


StoreField = Annotated[
    StoreURL,
    NoDecode,
    BeforeValidator(_store_url),
    PlainSerializer(lambda url: url.redacted(), return_type=str),
]
Seconds = Annotated[float, Field(gt=0, le=10 * 365 * 86400)]

ENV_PREFIX = "SESSIONWARD_"
_READ_ENV: ContextVar[bool] = ContextVar("sessionward_read_env", default=False)


class Settings(BaseSettings):
    """Every tunable of sessionward, with defaults that work on one machine.

    ``Settings(...)`` takes only the values given; it does not read the environment.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        arbitrary_types_allowed=True,
        validate_default=True,
    )

    store: StoreField = Field(default="sqlite:///sessionward.db")  # type: ignore[assignment]

    session_idle_timeout: Seconds = 1800.0
    session_absolute_timeout: Seconds = 43200.0
    session_touch_interval: Annotated[float, Field(ge=0, le=86400)] = 60.0
    sessions_per_user: Annotated[int, Field(ge=1, le=100_000)] = 10
    session_limit_action: Literal["evict_oldest", "refuse"] = "evict_oldest"

    state_max_bytes: Annotated[int, Field(ge=1, le=64 * 1024 * 1024)] = 262_144

    sweep_interval: Seconds = 60.0
    sweep_batch_size: Annotated[int, Field(ge=1, le=100_000)] = 500

    # the service
    host: Annotated[str, Field(min_length=1, max_length=255)] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 2 * 1024 * 1024
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # accounts and tokens
    secret_key: SecretStr | None = None
    previous_secret_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    jwt_algorithm: Literal["HS256", "EdDSA", "RS256"] = "HS256"
    jwt_private_key: SecretStr | None = None
    jwt_previous_public_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    jwt_issuer: Annotated[str, Field(min_length=1, max_length=255)] = "sessionward"
    jwt_audience: Annotated[str, Field(min_length=1, max_length=255)] = "sessionward"
    access_token_ttl: Annotated[int, Field(ge=10, le=86400)] = 900
    refresh_token_ttl: Annotated[int, Field(ge=60, le=10 * 365 * 86400)] = 1_209_600
    refresh_grace: Annotated[float, Field(ge=0, le=300)] = 10.0
    argon2_time_cost: Annotated[int, Field(ge=1, le=100)] = 3
    argon2_memory_cost: Annotated[int, Field(ge=8, le=4 * 1024 * 1024)] = 65536
    argon2_parallelism: Annotated[int, Field(ge=1, le=64)] = 4

    # rate limits (policy syntax: "10/second;100/minute", see sessionward.limits)
    ip_rate_limit: Annotated[str, Field(min_length=1, max_length=512)] = "20/second;600/minute"
    api_rate_limit: Annotated[str, Field(min_length=1, max_length=512)] = "50/second;1500/minute"
    ws_rate_limit: Annotated[str, Field(min_length=1, max_length=512)] = "5/second;120/minute"
    ws_max_message_bytes: Annotated[int, Field(ge=64, le=16 * 1024 * 1024)] = 65536
    ws_auth_timeout: Annotated[float, Field(gt=0, le=300)] = 5.0
    # how often an open WebSocket re-reads its session: a revocation closes it within this
    ws_session_check_interval: Annotated[float, Field(gt=0, le=60)] = 0.4
    rate_limit_reads_fail_open: bool = True

    # budgets (integers in minor units)
    budget_default: Annotated[int, Field(ge=0, le=2**53)] = 10_000
    budget_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    budget_hold_ttl: Annotated[float, Field(gt=0, le=30 * 86400)] = 3600.0

    # background jobs
    jobs_per_user_running: Annotated[int, Field(ge=1, le=10_000)] = 3
    jobs_running: Annotated[int, Field(ge=1, le=100_000)] = 8
    jobs_per_user_queued: Annotated[int, Field(ge=1, le=100_000)] = 20
    job_worker_slots: Annotated[int, Field(ge=0, le=100_000)] = 0  # 0: jobs_running
    job_lease: Annotated[float, Field(gt=0, le=3600)] = 15.0
    job_heartbeat: Annotated[float, Field(gt=0, le=600)] = 1.0
    job_poll_interval: Annotated[float, Field(gt=0, le=600)] = 1.0
    job_release_timeout: Annotated[float, Field(gt=0, le=60)] = 2.0  # a clean stop's hand-back
    job_retention: Seconds = 7 * 86400.0

    # brute-force protection
    login_max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    login_failure_window: Seconds = 900.0
    login_lockout: Seconds = 900.0
    login_lockout_max: Seconds = 86400.0
    login_ip_max_failures: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)

    # capacity monitor and admission control (docs/capacity.md); a threshold of 0 is off
    capacity_sample_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    capacity_history: Annotated[float, Field(gt=0, le=7 * 86400)] = 3600.0
    capacity_active_window: Annotated[float, Field(gt=0, le=86400)] = 300.0
    capacity_request_window: Annotated[float, Field(gt=0, le=3600)] = 60.0
    capacity_store_timeout: Annotated[float, Field(gt=0, le=60)] = 2.0
    capacity_max_cpu: Annotated[float, Field(ge=0, le=100)] = 0.0
    capacity_max_memory: Annotated[float, Field(ge=0, le=100)] = 0.0
    capacity_max_loop_lag: Annotated[float, Field(ge=0, le=60)] = 0.0
    capacity_max_pool_waiting: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    capacity_max_queued_jobs: Annotated[int, Field(ge=0, le=100_000_000)] = 0
    capacity_max_active_users: Annotated[int, Field(ge=0, le=100_000_000)] = 0
    capacity_hysteresis: Annotated[float, Field(ge=0, lt=1)] = 0.1
    capacity_retry_after: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # alert rules "figure>threshold;..." (sessionward.capacity.alerts), and where to post them
    capacity_alerts: Annotated[str, Field(max_length=2048)] = (
        "memory_percent>90;cpu_used>90;loop_lag>0.5;pool_waiting>1;latency_p99>2"
    )
    capacity_alert_webhook: SecretStr | None = None
    # who may read /metrics: admins (a bearer token with the admin role), anyone, or only
    # a separate listener on metrics_port (for a scraper on a private network)
    metrics_access: Literal["admin", "public", "port"] = "admin"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only from_env() looks at the environment; a library never does.
        return (init_settings, env_settings) if _READ_ENV.get() else (init_settings,)

    @field_validator("previous_secret_keys", "jwt_previous_public_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
        return value

    @field_validator("ip_rate_limit", "api_rate_limit", "ws_rate_limit")
    @classmethod
    def _policy(cls, value: str) -> str:
        try:
            parse_policy(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _idle_within_absolute(self) -> Self:
        if self.session_idle_timeout > self.session_absolute_timeout:
            raise ValueError("session_idle_timeout must not exceed session_absolute_timeout")
        return self

    @classmethod
    def defaults(cls, **values: Any) -> Settings:
        """Defaults plus ``values``, without looking at the environment."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigurationError(_explain(exc, env=False)) from None

    @classmethod
    def from_env(cls, **values: Any) -> Settings:
        """Read ``SESSIONWARD_*`` variables (explicit ``values`` win); for the service and CLI."""
        token = _READ_ENV.set(True)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigurationError(_explain(exc, env=True)) from None
        except SettingsError as exc:
            raise ConfigurationError(str(exc)) from None
        finally:
            _READ_ENV.reset(token)


def _explain(exc: ValidationError, *, env: bool) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    if not field:
        return f"invalid settings: {error['msg']}"
    name = f"{ENV_PREFIX}{field.upper()}" if env else field
    if error["type"] == "extra_forbidden":
        return f"unknown setting {name}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name} is invalid: {message}"
