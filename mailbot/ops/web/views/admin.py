"""The admin home (`/admin`): only admins reach it (`auth.guard` refuses operators with 403 for
the whole prefix). It links to the admin pages: the templates (views/admin_templates.py) and the
rules (views/admin_rules.py), the registry and key pool (views/admin_registry.py) and the
dry run (views/admin_dry_run.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mailbot.ops.web.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def admin_home(request: Request) -> HTMLResponse:
    return render(request, "admin.html", {"title": request.app.state.renderer.gettext("Admin")})
