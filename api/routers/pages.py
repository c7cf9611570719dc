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
CHINA_OUTLINE = Path(__file__).resolve().parents[2] / "geo" / "data" / "china_mainland.json"
# Page name → (title, class of <main>): each page's content is api/web/<name>.html inside api/web/shell.html.
# Titles are the Chinese defaults; api/web/static/i18n.js switches them (and everything else) to English.
PAGES = {"worker": ("地推人员", "narrow"), "merchant": ("商家后台", ""), "ops": ("运营看板", "")}
# Installed by the Makefile with npm (gitignored); without it the pages still load, with lists instead of maps.
LEAFLET = WEB / "node_modules" / "leaflet" / "dist"
# The API docs' browser code, also from npm: /docs and /redoc work without internet.
DOC_ASSETS = {"swagger": WEB / "node_modules" / "swagger-ui-dist", "redoc": WEB / "node_modules" / "redoc" / "bundles"}
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fieldproof API · {title}</title>{head}</head>
<body><main id="{root}" aria-label="Fieldproof API"></main>{scripts}</body></html>"""
MISSING_DOCS = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Fieldproof API</title></head><body>"
                "<main><h1>Fieldproof API</h1><p>The documentation viewer is not installed (run <code>make web</code>, "
                "which runs <code>npm ci --prefix api/web</code>). The document itself is at "
                "<a href='/openapi.json'>/openapi.json</a>.</p></main></body></html>")
docs_router = APIRouter(tags=["docs"], include_in_schema=False)
TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml",
         ".html": "text/html", ".map": "application/json"}
# Pages talk only to this origin; images may also come from the configured tile server.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: {tiles}; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _file(root: Path, path: str) -> FileResponse:
    """A file under ``root`` (never outside it), with a short cache."""
    try:
        target = (root / path).resolve()
        found = target.is_relative_to(root.resolve()) and target.is_file() and target.suffix in TYPES
    except (OSError, RuntimeError, ValueError):  # a name too long for the file system, a link loop, a NUL
        found = False
    if not found:
        raise NotFound(f"No such file: {path[:200]}.", code="file_not_found")
    return FileResponse(target, media_type=TYPES[target.suffix], headers={"Cache-Control": "no-cache"})


def _tile_origin() -> str:
    """The tile server's origin for CSP img-src; a {s} subdomain becomes a wildcard label."""
    url = get_settings().map_tiles["url"]
    if "://" not in url:
        return ""
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0].split("?", 1)[0]
    labels = ["*" if "{" in label else label for label in host.split(".")]
    if "*" in labels:  # CSP allows a wildcard only as the leftmost label
        labels = ["*"] + labels[labels.index("*") + 1:]
    return f"{scheme}://{'.'.join(labels)}"


@router.get("")
def index() -> RedirectResponse:
    """The worker page is the default (most visitors are on a phone)."""
    return RedirectResponse("/app/worker")


@router.get("/config.json")
def config() -> dict:
    """What the pages need to know: the base map (tile URL template, may be empty; its crs, subdomains and
    attribution) and whether Leaflet is installed."""
    tiles = get_settings().map_tiles
    return {"tile_url": tiles["url"], "tile_crs": tiles["crs"], "tile_subdomains": tiles["subdomains"],
            "tile_attribution": tiles["attribution"], "leaflet": (LEAFLET / "leaflet-src.esm.js").is_file()}


@router.get("/china_mainland.json")
def china_outline() -> FileResponse:
    """The mainland outline geo.crs shifts inside (map.js converts for GCJ-02 tiles the same way)."""
    return FileResponse(CHINA_OUTLINE, media_type="application/json", headers={"Cache-Control": "max-age=86400"})


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


def _docs_page(title: str, root: str, asset: str, head: list[str], scripts: list[str]) -> HTMLResponse:
    if not (DOC_ASSETS[asset] / Path(scripts[0]).name).is_file():
        return HTMLResponse(MISSING_DOCS, headers={"Content-Security-Policy": DOCS_CSP})
    html = DOCS_PAGE.format(title=title, root=root, head="".join(f'<link rel="stylesheet" href="{h}">' for h in head),
                            scripts="".join(f'<script src="{src}"></script>' for src in scripts))
    return HTMLResponse(html, headers={"Cache-Control": "no-cache", "Content-Security-Policy": DOCS_CSP})


@docs_router.get("/docs")
def swagger_ui() -> HTMLResponse:
    """Swagger UI over /openapi.json, from local assets."""
    return _docs_page("Swagger UI", "swagger-ui", "swagger", ["/docs/assets/swagger/swagger-ui.css"],
                      ["/docs/assets/swagger/swagger-ui-bundle.js", "/app/static/docs.js"])


@docs_router.get("/redoc")
def redoc() -> HTMLResponse:
    """ReDoc over /openapi.json, from local assets."""
    return _docs_page("ReDoc", "redoc", "redoc", [], ["/docs/assets/redoc/redoc.standalone.js", "/app/static/redoc.js"])


@docs_router.get("/docs/assets/{asset}/{path:path}")
def doc_asset(asset: str, path: str) -> FileResponse:
    """Swagger UI's and ReDoc's scripts and styles from node_modules."""
    if asset not in DOC_ASSETS:
        raise NotFound(f"No such file: {asset}/{path}.", code="file_not_found")
    return _file(DOC_ASSETS[asset], path)
