"""The caller's background jobs (docs/http-api.md, Jobs; docs/jobs.md).

The event stream ``GET /v1/jobs/{id}/events`` sends the job as it is now (``event:
status``), then each change (``event: status`` when the status changed, else ``event:
progress``), and ends after a terminal status. It re-checks the caller's session before
each event after the first ``ws_session_check_interval`` seconds: a revoked session's stream
ends there.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, suppress
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from ...auth.manager import Principal
from ...errors import SessionError, SessionwardError
from ...jobs import job_json
from ...ward import Ward
from ..body import StrictJSONRoute
from ..capacity import admit_job
from ..deps import Authenticated, WardDep
from ..models import ErrorResponse, JobAccepted, JobIn, JobKindList, JobList, JobOut

log = logging.getLogger("sessionward.service")
router = APIRouter(prefix="/v1/jobs", route_class=StrictJSONRoute, tags=["jobs"])
JobId = Annotated[str, Path(min_length=1, max_length=255)]


@router.get("/kinds", response_model=JobKindList)
async def list_kinds(principal: Authenticated, ward: WardDep) -> JobKindList:
    """The kinds of job this service runs, with the JSON schema of their params."""
    return JobKindList.model_validate({"kinds": ward.jobs.describe()})


@router.post(
    "", status_code=202, response_model=JobAccepted, dependencies=[Depends(admit_job)],
    responses={503: {"model": ErrorResponse, "description": "over_capacity"}},
)  # fmt: skip
async def submit(body: JobIn, principal: Authenticated, ward: WardDep) -> JobAccepted:
    """Queue a job. 404 ``unknown_kind``; 422 ``invalid_request`` for bad params (with the
    fields); 429 ``job_limit`` when the caller has the most waiting jobs allowed."""
    job = await ward.jobs.submit(principal.user_id, body.kind, body.params)
    return JobAccepted(job_id=job.job_id, status=job.status)


@router.get("", response_model=JobList)
async def list_jobs(
    principal: Authenticated, ward: WardDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> JobList:
    """The caller's jobs, newest first."""
    jobs = await ward.jobs.list(principal.user_id, limit=limit)
    return JobList(jobs=[JobOut(**job_json(job)) for job in jobs])


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: JobId, principal: Authenticated, ward: WardDep) -> JobOut:
    """One of the caller's jobs; 404 for any other."""
    return JobOut(**job_json(await ward.jobs.get(principal.user_id, job_id)))


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut)
async def cancel_job(job_id: JobId, principal: Authenticated, ward: WardDep) -> JobOut:
    """Cancel: a queued job is ``cancelled`` at once, a running one ``cancelling`` until its
    worker stops it. A finished job is returned as it is."""
    return JobOut(**job_json(await ward.jobs.cancel(principal.user_id, job_id)))


@router.get(
    "/{job_id}/events", response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "the job now, then each change, until it ends"}},
)  # fmt: skip
async def job_events(job_id: JobId, principal: Authenticated, ward: WardDep) -> StreamingResponse:
    """Server-sent events of one of the caller's jobs (404 before the stream starts)."""
    await ward.jobs.get(principal.user_id, job_id)
    return EventStream(
        _stream(ward, principal, job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class EventStream(StreamingResponse):
    """A stream that lasts as long as its job. When the server shuts down, its graceful
    timeout (``serve --shutdown-timeout``) cancels the streams still open: this one then
    ends its body properly instead of dying mid-response with a traceback in the log."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await super().__call__(scope, receive, sending)
        except anyio.get_cancelled_exc_class():
            if not started:
                raise
            with anyio.CancelScope(shield=True), suppress(OSError, RuntimeError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _stream(ward: Ward, principal: Principal, job_id: str) -> AsyncIterator[str]:
    status = None
    checked = time.monotonic()
    try:
        async with aclosing(ward.jobs.watch(principal.user_id, job_id)) as changes:
            async for job in changes:
                if time.monotonic() - checked > ward.settings.ws_session_check_interval:
                    await ward.sessions.get(principal.user_id, principal.session.session_id)
                    checked = time.monotonic()
                event = "status" if job.status != status else "progress"
                status = job.status
                data = json.dumps(job_json(job), ensure_ascii=False, separators=(",", ":"))
                yield f"event: {event}\ndata: {data}\n\n"
    except SessionError:
        return  # the session ended: so does its stream
    except SessionwardError as exc:  # purged, or the store failed: the client may reconnect
        log.warning("the event stream of job %s ended early: %s", job_id, exc)
