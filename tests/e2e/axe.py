"""axe-core in the page: the WCAG 2.x A and AA rules (2.2 included) as Deque's engine checks them.

The script comes from npm (`axe-core` in package.json, installed by `make test`) and is injected
with Playwright's `add_script_tag`; the site's Content-Security-Policy forbids inline scripts,
so pages scanned this way are opened in a context made with `bypass_csp=True`. Every scan
leaves its full result under test-artifacts/axe/.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page

from tests.e2e.artifacts import ARTIFACTS, ROOT

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = ("serious", "critical")

_RUN = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags},
                                          resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
  }));
}"""


def violations(page: Page, name: str) -> list[dict]:
    """axe's violations on the page as it is now; written to test-artifacts/axe/<name>.json."""
    if not AXE.exists():
        pytest.fail("axe-core is not installed: run `make test` (it runs `npm install`).",
                    pytrace=False)
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(_RUN, TAGS)
    folder = ARTIFACTS / "axe"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"url": page.url, "violations": found},
                                                    indent=2))
    return found


def assert_accessible(page: Page, name: str) -> None:
    """No serious or critical violation on this page (minor and moderate ones are recorded)."""
    blocking = [v for v in violations(page, name) if v["impact"] in BLOCKING]
    assert not blocking, f"{name} ({page.url}):\n" + json.dumps(blocking, indent=2)
