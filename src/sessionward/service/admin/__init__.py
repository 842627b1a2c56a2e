"""The admin dashboard (``/admin``)."""

from __future__ import annotations

from .routes import router

__all__ = ["router"]
