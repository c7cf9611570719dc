// ReDoc for /redoc from the API's own copy of redoc's standalone bundle (no CDN, no inline script).
window.Redoc.init("/openapi.json", { disableSearch: false, hideDownloadButton: false }, document.getElementById("redoc"));
