"""Job kinds: a name, a handler, a pydantic model for its parameters, and how it runs.

    class ScanParams(BaseModel):
        text: str

    async def scan(ctx: JobContext, params: ScanParams) -> dict[str, int]:
        await ctx.progress(0.5, "halfway")
        return {"found": 3}

    ward.jobs.register(JobKind("scan", scan, ScanParams, timeout=300))

An ``async`` handler runs on the event loop; a cancel or its timeout interrupts its awaits.
A plain function runs in a worker thread (``executor="thread"``) and gets a
:class:`~.context.ThreadJobContext`: a thread cannot be interrupted, so it must look at
``ctx.cancelled`` (or call ``ctx.check()``) between steps; a cancel or a timeout sets it.
With ``executor="process"`` a top-level function runs in a process pool, for CPU-bound work:
it gets only its parameters as a dict, and a cancel or a timeout kills its process.

The handler's return value must be plain JSON (at most 1 MiB). Raising :class:`JobError`
fails the job with that message for its owner; any other exception fails it with a generic
message (the traceback goes to the log, never to the owner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import InvalidJobParams

Executor = Literal["async", "thread", "process"]


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Callable[..., Any]
    params: type[BaseModel] = NoParams
    description: str = ""
    timeout: float = 3600.0
    max_attempts: int = 2
    executor: Executor = "async"

    def __post_init__(self) -> None:
        if not self.name.isascii() or not self.name.replace("_", "").isalnum():
            raise ValueError("a job kind's name is ASCII letters, digits and '_'")
        if len(self.name) > 64:
            raise ValueError("a job kind's name is at most 64 characters")
        if not 0 < self.timeout <= 7 * 86400 or not 1 <= self.max_attempts <= 100:
            raise ValueError("timeout must be up to a week and max_attempts 1 to 100")
        if self.executor not in ("async", "thread", "process"):
            raise ValueError("executor is 'async', 'thread' or 'process'")

    def parse(self, params: Any) -> BaseModel:
        """The parameters as the kind's model, or :class:`InvalidJobParams`."""
        try:
            return self.params.model_validate({} if params is None else params)
        except ValidationError as exc:
            raise InvalidJobParams(self.name, [_field(e) for e in exc.errors()][:20]) from None

    def describe(self) -> dict[str, Any]:
        """The kind as ``GET /v1/jobs/kinds`` lists it."""
        schema = self.params.model_json_schema()
        return {"kind": self.name, "description": self.description, "params_schema": schema}


def _field(error: Any) -> dict[str, str]:
    where = ".".join(str(part) for part in error.get("loc", ()))
    return {"field": f"params.{where}" if where else "params", "message": str(error["msg"])}
