"""``/docs`` in a real browser: headless Chromium, with every request off this machine cut.

The server is the real ``inventory serve``. Chromium resolves no host name but 127.0.0.1
and sends everything else to a dead proxy, so the page can only work if every file it needs
comes from the service itself. Without Chromium the test is skipped with the reason, except
in CI (``CI=true``), where that is a failure: ``.ci/run`` installs Debian's ``chromium``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from service.http.spec import load_document, load_operations
from tests.support.processes import ServedProcess, free_port

NO_NETWORK = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    f"--proxy-server=http://127.0.0.1:{free_port()}",  # nothing listens there
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
]


def chromium() -> str:
    """The Chromium binary; a skip (a failure in CI) when there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def rendered(url: str, profile: Path) -> str:
    """The DOM of ``url`` once its scripts have run, as headless Chromium serializes it."""
    browser = chromium()
    outcome = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", f"--user-data-dir={profile}", *NO_NETWORK,
            "--virtual-time-budget=15000", "--timeout=60000", "--dump-dom", url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    return outcome.stdout


def test_the_docs_page_renders_every_operation_of_the_contract_with_the_network_cut(
    tmp_path: Path,
) -> None:
    with ServedProcess(tmp_path, "--database", str(tmp_path / "inventory.db")) as served:
        dom = rendered(f"{served.url}/", tmp_path / "profile")  # / redirects to /docs

    shown = re.findall(r'class="opblock-summary-operation-id">([^<]+)<', dom)
    expected = [op.operation_id for op in load_operations(load_document())]
    assert sorted(shown) == sorted(expected), dom[-3000:]
    assert "OAS 3.1" in dom
    assert load_document()["info"]["title"] in dom
    assert "Failed to load API definition" not in dom
