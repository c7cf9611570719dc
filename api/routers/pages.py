"""The three web pages (worker, merchant, ops) and their static files, served by the API itself (no CDN)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from core.config import get_settings
from core.errors import NotFound

router = APIRouter(prefix="/app", tags=["pages"], include_in_schema=False)
WEB = Path(__file__).resolve().parent.parent / "web"
STATIC = WEB / "static"
# Page name → (title, class of <main>): each page's content is api/web/<name>.html inside api/web/shell.html.
# Titles are the Chinese defaults; api/web/static/i18n.js switches them (and everything else) to English.
PAGES = {"worker": ("地推人员", "narrow"), "merchant": ("商家后台", ""), "ops": ("运营看板", "")}
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


@lru_cache
def _render(page: str) -> str:
    title, main_class = PAGES[page]
    shell = (WEB / "shell.html").read_text()
    filled = shell.replace("{title}", title).replace("{page}", page).replace("{main_class}", main_class)
    return filled.replace("{body}", (WEB / f"{page}.html").read_text())


@router.get("/{page}")
def page(page: str) -> HTMLResponse:
    """One of the three pages: its content in the shared shell (head, sign-in form, toasts)."""
    if page not in PAGES:
        raise NotFound(f"No such page: {page}.", code="page_not_found")
    return HTMLResponse(_render(page), headers={
        "Cache-Control": "no-cache", "Content-Security-Policy": CSP.format(tiles=_tile_origin()).replace("  ", " ")})
