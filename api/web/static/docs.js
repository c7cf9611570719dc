// Swagger UI for /docs from the API's own copy of swagger-ui-dist (no CDN, no inline script: CSP 'self').
window.ui = window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [window.SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
