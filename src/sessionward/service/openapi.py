"""The service's OpenAPI document, with each job kind's params spelled out.

``POST /v1/jobs`` takes ``{"kind", "params"}`` where the params' schema depends on the kind.
The generated schema says only "an object", so a client (or a fuzzer) that trusts it sends
params the kind refuses. Here ``JobIn`` becomes one alternative per kind, each with that
kind's own params schema, the same one ``GET /v1/jobs/kinds`` serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..jobs.kinds import JobKind


def openapi_with_kinds(app: FastAPI, kinds: Iterable[JobKind]) -> Callable[[], dict[str, Any]]:
    """A replacement for ``app.openapi`` that describes ``JobIn`` kind by kind."""
    kinds = tuple(kinds)

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)  # fmt: skip
            components = schema["components"]["schemas"]
            one_of = [_job_in(kind, components) for kind in kinds]
            components["JobIn"] = {"title": "JobIn", "oneOf": one_of}
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def _job_in(kind: JobKind, components: dict[str, Any]) -> dict[str, Any]:
    params = kind.params.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(params.pop("$defs", {}))  # the kind's nested models, if any
    return {
        "type": "object",
        "title": f"JobIn[{kind.name}]",
        "properties": {"kind": {"const": kind.name}, "params": params},
        "required": ["kind", "params"] if _requires_params(params) else ["kind"],
        "additionalProperties": False,
    }


def _requires_params(params: dict[str, Any]) -> bool:
    return bool(params.get("required"))
