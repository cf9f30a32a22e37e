"""The two checkers the page tests run: axe-core (WCAG 2.2 AA) in the browser, and the Nu HTML
Checker (vnu.jar, the W3C validator's engine) on the machine's Java, once over many files."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
NO_TRANSITIONS = (
    "*, *::before, *::after { transition: none !important; animation: none !important; }"
)
VNU_JAR = Path(__file__).parent / "vendor" / "vnu" / "vnu.jar"
VNU_SCRIPT = ROOT / "scripts" / "vendor-vnu.sh"

# What the validator may say that is not an error of ours, each with its reason.
VNU_ALLOWED = (
    # htmx's attributes are not HTML's; htmx reads them by name (https://htmx.org/reference/).
    re.compile(r"^Attribute “hx-[a-z-]+” not allowed on element “[a-z]+” at this point\.$"),
)


def axe_violations(page: Page) -> list[str]:
    """Serious and critical axe violations on the page as it is now, one line each.

    Transitions are switched off first: a colour caught halfway through one (a button just
    clicked) is not the colour anyone reads."""
    page.add_style_tag(content=NO_TRANSITIONS)
    page.add_script_tag(content=AXE)
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def validate(java: str, folder: Path) -> dict[str, list[str]]:
    """Errors of every .html file in `folder` by file name, from ONE run of vnu (a JVM start
    costs seconds); messages in VNU_ALLOWED are left out."""
    files = sorted(folder.glob("*.html"))
    if not files:
        return {}
    run = subprocess.run(
        [java, "-jar", str(VNU_JAR), "--format", "json", "--errors-only", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # vnu writes its report to stderr, and exits 1 when it found errors.
    try:
        report = json.loads(run.stderr or run.stdout)
    except json.JSONDecodeError as error:
        detail = run.stderr[:2000]
        raise AssertionError(
            f"vnu did not answer JSON (exit {run.returncode}): {detail}"
        ) from error
    found: dict[str, list[str]] = {}
    for message in report.get("messages", []):
        if message.get("type") not in ("error", "non-document-error"):
            continue
        text = message.get("message", "")
        if any(pattern.match(text) for pattern in VNU_ALLOWED):
            continue
        name = Path(message.get("url", "?").removeprefix("file:")).name
        where = f"line {message.get('lastLine', '?')}"
        found.setdefault(name, []).append(f"{where}: {text} [{message.get('extract', '')!r}]")
    return found
