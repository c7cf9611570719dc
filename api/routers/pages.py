"""The three web pages (worker, merchant, ops) and their static files, served by the API itself (no CDN)."""
from __future__ import annotations

from pathlib import Path
from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from core.config import get_settings
from core.errors import NotFound

router = APIRouter(prefix="/app", tags=["pages"], include_in_schema=False)
WEB = Path(__file__).resolve().parent.parent / "web"
STATIC = WEB / "static"
PAGES = ("worker", "merchant", "ops")
# Installed by the Makefile with npm (gitignored); without it the pages still load, with lists instead of maps.
LEAFLET = WEB / "node_modules" / "leaflet" / "dist"
TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml",
         ".html": "text/html", ".map": "application/json"}
# Pages talk only to this origin; images may also come from the configured tile server.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: {tiles}; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _file(root: Path, path: str) -> FileResponse:
    """A file under ``root`` (never outside it), with a short cache."""
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file() or target.suffix not in TYPES:
        raise NotFound(f"No such file: {path}.", code="file_not_found")
    return FileResponse(target, media_type=TYPES[target.suffix], headers={"Cache-Control": "no-cache"})


def _tile_origin() -> str:
    url = get_settings().map_tile_url
    return "/".join(url.split("/")[:3]) if "://" in url else ""


@router.get("")
def index() -> RedirectResponse:
    """The worker page is the default (most visitors are on a phone)."""
    return RedirectResponse("/app/worker")


@router.get("/config.json")
def config() -> dict:
    """What the pages need to know: the base-map tile URL (may be empty) and whether Leaflet is installed."""
    return {"tile_url": get_settings().map_tile_url, "leaflet": (LEAFLET / "leaflet-src.esm.js").is_file()}


@router.get("/static/{path:path}")
def static(path: str) -> FileResponse:
    """The pages' own scripts and styles."""
    return _file(STATIC, path)


@router.get("/vendor/leaflet/{path:path}")
def leaflet(path: str) -> FileResponse:
    """Leaflet's ES module, stylesheet and images from node_modules."""
    return _file(LEAFLET, path)


@router.get("/{page}")
def page(page: str) -> FileResponse:
    """One of the three pages."""
    if page not in PAGES:
        raise NotFound(f"No such page: {page}.", code="page_not_found")
    resp = _file(WEB, f"{page}.html")
    resp.headers["Content-Security-Policy"] = CSP.format(tiles=_tile_origin()).replace("  ", " ")
    return resp
