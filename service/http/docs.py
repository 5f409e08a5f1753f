"""The documentation page: openapi.yaml rendered by Swagger UI, served by the service itself.

The page is a few lines of HTML of our own; Swagger UI's scripts and style sheet come from
the ``swagger-ui-py`` package (Swagger UI 5, which renders OpenAPI 3.1) and are served
from ``/docs/static/``, so the page makes no request beyond this server. It reads the
contract from ``/openapi.yaml``, byte for byte the file the service is built from;
``validatorUrl: null`` keeps Swagger UI from asking an outside validator about it.
"""

from __future__ import annotations

from functools import cache

from swagger_ui.utils import SWAGGER_UI_PY_ROOT

ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
"""The files the page uses, with their media types (the contract lists the same names)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Inventory API</title>
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script src="/docs/static/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.yaml",
      dom_id: "#swagger-ui",
      validatorUrl: null,
      deepLinking: true,
      displayOperationId: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "BaseLayout",
    });
  </script>
</body>
</html>
"""


@cache
def asset(name: str) -> bytes:
    """The content of one of ``ASSETS``, read from the package once."""
    if name not in ASSETS:
        raise KeyError(name)
    content: bytes = (SWAGGER_UI_PY_ROOT / "static" / name).read_bytes()
    return content
