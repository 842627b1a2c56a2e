from __future__ import annotations

from fastapi import APIRouter

from ...errors import StorageError
from ..body import StrictJSONRoute
from ..deps import WardDep
from ..errors import ApiError
from ..models import Health, Ready

router = APIRouter(route_class=StrictJSONRoute, tags=["health"])


@router.get("/v1/health", response_model=Health)
async def health() -> Health:
    """200 while the process runs."""
    return Health(status="ok")


@router.get("/v1/ready", response_model=Ready)
async def ready(ward: WardDep) -> Ready:
    """200 when the store answers; 503 ``store_unavailable`` when it does not."""
    try:
        latency = await ward.ping()
    except StorageError:
        raise ApiError(503, "store_unavailable", "The store does not answer.",
                       retry_after=1) from None  # fmt: skip
    return Ready(status="ready", store=ward.backend, latency_ms=round(latency * 1000, 3))
