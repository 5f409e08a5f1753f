"""``GET /``, ``GET /docs`` and the page's files: public, local, and in the contract.

Every response here goes through ``ContractClient``, so each is checked against
openapi.yaml like any other. That the page actually renders, in a browser with the network
cut off, is ``tests/system/test_docs_page.py``.
"""

from __future__ import annotations

import re

import pytest

from service.http.docs import ASSETS
from tests.support.contract import ContractClient


def test_the_root_redirects_a_browser_to_the_docs(module_anonymous: ContractClient) -> None:
    response = module_anonymous.get("/", allow_redirects=False)

    assert response.status_code == 302
    assert response.headers["Location"] == "/docs"
    assert module_anonymous.get("/").url.endswith("/docs")


def test_the_docs_page_is_public_html_that_loads_only_files_of_this_server(
    module_anonymous: ContractClient,
) -> None:
    response = module_anonymous.get("/docs")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert 'url: "/openapi.yaml"' in page
    assert "validatorUrl: null" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), page
    loaded = re.findall(r'(?:src|href)="/docs/static/([^"]+)"', page)
    assert sorted(loaded) == sorted(ASSETS)


@pytest.mark.parametrize("asset", ASSETS)
def test_each_file_of_the_page_is_served_with_its_media_type(
    module_anonymous: ContractClient, asset: str
) -> None:
    response = module_anonymous.get(f"/docs/static/{asset}")

    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == ASSETS[asset]
    assert len(response.content) > 100


def test_the_bundled_swagger_ui_renders_openapi_3_1(module_anonymous: ContractClient) -> None:
    bundle = module_anonymous.get("/docs/static/swagger-ui-bundle.js").text
    [version] = re.findall(r'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle)[:1]

    assert int(version) >= 5  # Swagger UI renders OpenAPI 3.1 from 5.0 on


@pytest.mark.parametrize("name", ["nope.js", "..%2Fopenapi.yaml", "swagger-editor.js"])
def test_a_file_the_page_does_not_use_is_a_400_that_names_the_asset(
    module_anonymous: ContractClient, name: str
) -> None:
    response = module_anonymous.get(f"/docs/static/{name}")

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["path.asset"]


def test_nothing_outside_the_listed_files_is_reachable_under_docs(
    module_anonymous: ContractClient,
) -> None:
    for path in ("/docs/static/", "/docs/static/a/b.js", "/docs/"):
        assert module_anonymous.get(path).status_code == 404
