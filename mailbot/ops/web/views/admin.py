"""The admin pages (`/admin/...`): only admins reach them (`auth.guard` refuses operators with
403 for the whole prefix). A placeholder until the admin issue fills it with templates and
rules."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mailbot.ops.web.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def admin_home(request: Request) -> HTMLResponse:
    return render(request, "admin.html", {"title": request.app.state.renderer.gettext("Admin")})
