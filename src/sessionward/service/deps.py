"""The service's dependency aliases, on :data:`sessionward.fastapi.from_app` (the
SessionWard that ``create_app`` builds): no lookup of its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from ..auth.manager import Principal
from ..fastapi import from_app
from ..ward import Ward

WardDep = Annotated[Ward, Depends(from_app.get_ward)]
Authenticated = Annotated[Principal, Depends(from_app.principal)]
