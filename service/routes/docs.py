"""GET /docs: Swagger UI from assets a package ships (fastapi-offline), so it works on a host without internet."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["docs"])

ASSETS = "/docs/assets"  # where create_app mounts the package's static folder
ASSETS_PACKAGE = ("fastapi_offline", "static")


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(openapi_url=f"{root}{request.app.openapi_url}",
                               title=f"{request.app.title} - Swagger UI",
                               swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{root}{ASSETS}/favicon.png")
