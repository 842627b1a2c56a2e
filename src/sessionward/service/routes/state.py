from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response

from ...auth.manager import Principal
from ...state import check_name
from ...stores.records import StateScope
from ..body import StrictJSONRoute
from ..deps import Authenticated, WardDep
from ..errors import NOT_FOUND, invalid
from ..models import Document, Names, StateWrite, Written

router = APIRouter(prefix="/v1/state", route_class=StrictJSONRoute, tags=["state"])

Scope = Annotated[str, Path(max_length=16, description="user or session")]
Name = Annotated[str, Path(max_length=128)]


def _scope(principal: Principal, scope: str) -> StateScope:
    # The owner always comes from the validated session, never from the request.
    if scope == "user":
        return principal.session.scope("user")
    if scope == "session":
        return principal.session.scope("session")
    raise NOT_FOUND


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 18:
        raise invalid("If-Match", 'If-Match must be a version in quotes, e.g. "3"')
    return int(text)


@router.get("/{scope}/{name}", response_model=Document)
async def get_document(
    scope: Scope, name: Name, principal: Authenticated, ward: WardDep, response: Response
) -> Document:
    doc = await ward.state.get(_scope(principal, scope), check_name(name))
    if doc is None:
        raise NOT_FOUND
    response.headers["ETag"] = f'"{doc.version}"'
    return Document(name=doc.name, data=doc.data, version=doc.version)


@router.put("/{scope}/{name}", response_model=Written)
async def put_document(
    scope: Scope,
    name: Name,
    body: StateWrite,
    principal: Authenticated,
    ward: WardDep,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=64)] = None,
) -> Written:
    """Write; with ``If-Match`` only over that version (412 ``version_conflict``)."""
    version = await ward.state.put(
        _scope(principal, scope), check_name(name), body.data, expected_version=_version(if_match)
    )
    response.headers["ETag"] = f'"{version}"'
    return Written(name=name, version=version)


@router.delete("/{scope}/{name}", status_code=204, response_class=Response)
async def delete_document(
    scope: Scope,
    name: Name,
    principal: Authenticated,
    ward: WardDep,
    if_match: Annotated[str | None, Header(max_length=64)] = None,
) -> Response:
    deleted = await ward.state.delete(
        _scope(principal, scope), check_name(name), expected_version=_version(if_match)
    )
    if not deleted:
        raise NOT_FOUND
    return Response(status_code=204)


@router.get("/{scope}", response_model=Names)
async def list_documents(scope: Scope, principal: Authenticated, ward: WardDep) -> Names:
    return Names(names=await ward.state.names(_scope(principal, scope)))
