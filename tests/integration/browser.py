"""The real-browser tier of the sign-up pages (test_39): Debian's Chromium, headless, driven
through Debian's ChromeDriver with Selenium, and axe-core run inside the page.

  browser            fixture: browser(accept_language="en") -> a new headless Chrome
                     (selenium WebDriver), quit at the end of the test
  desktop(driver)    the viewport DESKTOP (1100 x 900, as a laptop's window)
  phone(driver)      the viewport PHONE (390 x 844 CSS pixels, mobile: the page's
                     <meta name=viewport> applies, as on a phone); phone(d, REFLOW): 320 px
  axe_violations(d)  injects the cached axe.min.js and runs it on the page (WCAG 2.0/2.1 A
                     and AA rules); returns one readable line per violation: [] is a pass
  page_status(d)     the HTTP status of the last page the browser loaded (from the driver's
                     performance log: what the browser itself received)
  screenshot(d, p)   a PNG of the whole page (beyond the viewport) at p
  serve_html(html)   a context manager: the HTML on a tiny loopback http.server, its URL
  tab_through(d, n)  presses Tab (real key events) from the top of the page until focus
                     leaves the page or n presses; what had the focus each time, with its
                     focus indicator (outline) and the colour behind it
  contrast(a, b)     WCAG contrast ratio of two CSS colours "rgb(r, g, b)"
  text_spacing(d)    the text spacing of WCAG 2.1 1.4.12 on the current page (as a user's
                     style sheet would set it)

Nothing is skipped: when Chromium, ChromeDriver, Selenium or axe-core is missing, the test
fails and says to run deploy/local/install-deps.sh (which installs all four), so that a CI
without the browser tier cannot go green.  The axe-core version is the one that script
fetches (its AXE_VERSION line); its cache is the script's (NC_CACHE_DIR, else
${XDG_CACHE_HOME:-~/.cache}/noticecast).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import threading
from pathlib import Path

import pytest

from conftest import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_DEPS = REPO / "deploy" / "local" / "install-deps.sh"
DESKTOP = (1100, 900)
PHONE = (390, 844)
# WCAG 2.1 1.4.10 (reflow): no scrolling in two directions at 320 CSS px.
REFLOW = (320, 640)
# The rule sets of WCAG 2.1 level AA (axe's tags: 2.0 A and AA, and what 2.1 added).
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

HOW = f"run {INSTALL_DEPS.relative_to(REPO)} (it installs the browser tier's dependencies)"


def axe_version() -> str:
    m = re.search(r"^AXE_VERSION=(\S+)$", INSTALL_DEPS.read_text(), re.M)
    assert m, f"no AXE_VERSION= line in {INSTALL_DEPS}"
    return m.group(1)


def axe_path() -> Path:
    root = os.environ.get("NC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "noticecast")
    return Path(root) / f"axe-core-{axe_version()}" / "axe.min.js"


def _missing() -> list:
    out = []
    for what, path in (("Chromium (Debian package chromium)", CHROMIUM),
                       ("ChromeDriver (Debian package chromium-driver)", CHROMEDRIVER)):
        if not os.access(path, os.X_OK):
            out.append(f"{what}: no {path}")
    try:
        import selenium  # noqa: F401
    except ImportError:
        out.append("the Python module selenium (tests/integration/requirements.txt)")
    if not axe_path().is_file():
        out.append(f"axe-core {axe_version()}: no {axe_path()}")
    return out


def _axe_source() -> str:
    return axe_path().read_text(encoding="utf-8")


def new_driver(accept_language: str = "en", log_path=None):
    """A headless Chromium at the DESKTOP size whose requests say Accept-Language
    accept_language (a browser set to that language); ChromeDriver's log at log_path."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox",  # root: Chromium's sandbox refuses to run
              "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
              "--disable-extensions", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--hide-scrollbars",
              f"--window-size={DESKTOP[0]},{DESKTOP[1]}", f"--lang={accept_language}"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"intl.accept_languages": accept_language})
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # The driver's path is given: Selenium Manager (which would download one) is not run.
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log_path or os.devnull))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    desktop(driver)
    return driver


@pytest.fixture
def browser(tmp_path):
    """browser(accept_language="en") -> WebDriver; every one made is quit after the test.
    At the end each one's last page is kept as browser-N.png and browser-N.html beside its
    ChromeDriver log (browser-N.log) in the test's tmp_path, and the log's tail printed
    (pytest shows it when the test failed)."""
    missing = _missing()
    if missing:
        pytest.fail("the browser tests need " + "; ".join(missing) + f": {HOW}", pytrace=False)
    made = []

    def make(accept_language: str = "en"):
        d = new_driver(accept_language, tmp_path / f"browser-{len(made) + 1}.log")
        made.append(d)
        return d

    yield make
    for i, d in enumerate(made, 1):
        base = tmp_path / f"browser-{i}"
        with contextlib.suppress(Exception):
            d.save_screenshot(str(base.with_suffix(".png")))
            base.with_suffix(".html").write_text(d.page_source, encoding="utf-8")
            print(f"--- browser {i}: last page {d.current_url} ({base}.png, .html)")
        with contextlib.suppress(Exception):
            d.quit()
        with contextlib.suppress(OSError):
            tail = base.with_suffix(".log").read_text(errors="replace").splitlines()[-20:]
            print(f"--- {base}.log, last {len(tail)} lines:\n" + "\n".join(tail))


def _viewport(driver, size, mobile: bool) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile})


def desktop(driver) -> None:
    _viewport(driver, DESKTOP, False)


def phone(driver, size=PHONE) -> None:
    _viewport(driver, size, True)


def horizontal_overflow(driver) -> tuple:
    """(document.documentElement.scrollWidth, window.innerWidth): wider than the window
    means the page scrolls sideways."""
    return tuple(driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];"))


_RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})
   .then(r => done(JSON.stringify(r.violations)), e => done(JSON.stringify({error: String(e)})));
"""


def axe_violations(driver, tags=None) -> list:
    """axe-core's WCAG violations on the current page (the whole document), one readable
    line each: rule id (impact): first target selectors -- help [n nodes] first failure."""
    if not driver.execute_script("return typeof window.axe === 'object';"):
        # WebDriver's script runs outside the page's CSP (script-src 'none' allows no
        # <script> of the page itself, which is what the policy is for).
        driver.execute_script(_axe_source())
    out = json.loads(driver.execute_async_script(_RUN_AXE, list(tags or WCAG_TAGS)))
    if isinstance(out, dict):
        raise AssertionError(f"axe.run failed on {driver.current_url}: {out['error']}")
    return [format_violation(v) for v in out]


def format_violation(v: dict) -> str:
    nodes = v.get("nodes") or []
    targets = [" ".join(map(str, n.get("target") or [])) for n in nodes[:3]]
    first = " ".join((nodes[0].get("failureSummary") or "").split()) if nodes else ""
    return (f"{v['id']} ({v.get('impact')}): {', '.join(targets)} -- {v.get('help')} "
            f"[{len(nodes)} node(s)] {first}")


def page_status(driver) -> int | None:
    """The HTTP status of the last document the browser received (None if it saw none since
    the last call): read from the performance log, which each call empties."""
    status = None
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.responseReceived" and \
                msg["params"].get("type") == "Document":
            status = msg["params"]["response"]["status"]
    return status


def screenshot(driver, path) -> Path:
    """The whole page, beyond the viewport, as a PNG at path (its folder made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = driver.execute_script("return [document.documentElement.scrollWidth,"
                                 " document.documentElement.scrollHeight];")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


_TEXT_SPACING = """
// Appended to the page's own (same-origin) style sheet through the CSSOM, which the CSP
// allows: a <style> element or a style attribute it would not.
const sheet = document.styleSheets[0];
for (const r of ['* { line-height: 1.5 !important; letter-spacing: .12em !important;'
                 + ' word-spacing: .16em !important; }',
                 'p { margin-bottom: 2em !important; }'])
  sheet.insertRule(r, sheet.cssRules.length);
"""


def text_spacing(driver) -> None:
    """WCAG 2.1 1.4.12: line height 1.5, paragraphs 2 em apart, letters .12 em, words .16 em
    (until the page is loaded again)."""
    driver.execute_script(_TEXT_SPACING)


_FOCUSED = """
const e = document.activeElement;
if (!e || e === document.body || e === document.documentElement) return null;
const s = getComputedStyle(e);
let bg = null;
// The outline is drawn outside the element (outline-offset >= 0): what is behind it is the
// background of the nearest ancestor that paints one.
for (let p = e.parentElement; p && !bg; p = p.parentElement) {
  const b = getComputedStyle(p).backgroundColor;
  if (b && b !== 'rgba(0, 0, 0, 0)' && b !== 'transparent') bg = b;
}
return {id: e.id, tag: e.tagName.toLowerCase(), type: e.getAttribute('type') || '',
        outline_style: s.outlineStyle, outline_width: parseFloat(s.outlineWidth) || 0,
        outline_color: s.outlineColor, outline_offset: parseFloat(s.outlineOffset) || 0,
        behind: bg || 'rgb(255, 255, 255)'};
"""


def tab_through(driver, max_presses: int = 60) -> list:
    """Tab from the top of the page: [{id, tag, type, outline_*, behind}] of each element
    that got the focus, in order, each once (a time input keeps it for its parts)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.activeElement && document.activeElement.blur();"
                          " window.scrollTo(0, 0);")
    seen = []
    for _ in range(max_presses):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        f = driver.execute_script(_FOCUSED)
        if f is None:
            break
        if not seen or (f["id"], f["tag"]) != (seen[-1]["id"], seen[-1]["tag"]):
            if any((f["id"], f["tag"]) == (x["id"], x["tag"]) for x in seen):
                break  # round again
            seen.append(f)
    return seen


def _rgb(css: str) -> tuple:
    m = re.match(r"rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)", css)
    assert m, f"not an rgb() colour: {css!r}"
    return tuple(float(x) / 255 for x in m.groups())


def contrast(a: str, b: str) -> float:
    """The WCAG 2.1 contrast ratio of two sRGB colours (1.0 ... 21.0)."""
    def lum(c):
        r, g, b_ = (x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b_
    la, lb = sorted((lum(_rgb(a)), lum(_rgb(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@contextlib.contextmanager
def serve_html(html: str, name: str = "mail.html"):
    """Serves html (UTF-8) at http://127.0.0.1:PORT/name on a loopback server of its own for
    the duration of the block; yields that URL."""
    body = html.encode("utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] != "/" + name:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/{name}"
    finally:
        srv.shutdown()
        srv.server_close()
