"""What the browser tests share: Debian's Chromium driven by Playwright, and axe-core's verdict on a page."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, and quiet: without the background-networking flags Chromium keeps calling Google's hosts,
# which this machine's closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
AXE = Path(__file__).resolve().parent.parent / "api" / "web" / "node_modules" / "axe-core" / "axe.min.js"


def chromium(extra_args: tuple[str, ...] = ()) -> Iterator:
    """A launched Chromium for a module-scoped fixture (``yield from chromium()``); closed after the module."""
    from playwright import sync_api  # each browser-test module skips itself first when Playwright is missing

    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
        yield b
        b.close()


def axe_violations(page) -> list[dict]:
    """axe-core's critical and serious violations on the page as it stands (id, impact, up to 5 nodes)."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))""")
    return [v for v in found if v["impact"] in ("critical", "serious")]
