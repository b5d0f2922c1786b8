"""The status page in headless Chromium (Debian's chromium + chromium-driver, driven over
WebDriver by selenium): strips in the right colours and order, tooltips with the reason, charts
with points, no console error, no script injected by hostile names, the public page without
traces or configuration, 375 px and dark mode; and the region grid against PromQL.

Usage: browser.py ADMIN_URL STORE_URL PUBLIC_URL PROMETHEUS_URL SCREENSHOT_DIR
  ADMIN_URL: an agent whose history is the in-memory last runs (slots of one second);
  STORE_URL: an agent with the SQLite store; PUBLIC_URL: ADMIN's public listener.
Exit 0 when every check passes; each failure is printed.
"""
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

admin, store, public, prom, shots = sys.argv[1:6]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def browser():
    o = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--lang=en-US", "--force-color-profile=srgb"]:
        o.add_argument(a)
    o.binary_location = "/usr/bin/chromium"
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def shot(d, name, full=True):
    if full:
        h = d.execute_script("return document.documentElement.scrollHeight")
        w = d.execute_script("return window.innerWidth")
        d.set_window_size(max(w, 375), min(h + 140, 4000))
    path = os.path.join(shots, name + ".png")
    d.save_screenshot(path)
    print("     screenshot " + path)


def console_errors(d, where):
    errs = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
    check(not errs, f"no console error on {where}: {errs}")


def no_injection(d, where):
    try:
        d.switch_to.alert
        check(False, f"no alert() ran on {where}")
    except NoAlertPresentException:
        pass
    check(d.execute_script("return window.__xss === undefined"), f"no injected script ran on {where}")
    check(not d.find_elements(By.CSS_SELECTOR, "img[src=x], main b"), f"no injected element on {where}")


def slot_classes(d, name):
    strip = d.find_element(By.CSS_SELECTOR, f'article[data-name="{name}"] .strip')
    t0 = int(strip.get_attribute("data-t0"))
    w = int(strip.get_attribute("data-w"))
    classes = d.execute_script(
        "return Array.from(arguments[0].children).map(e => e.className.replace(' sel',''))", strip)
    return strip, t0, w, classes


def listed_runs(base, name, pages=4):
    """(started ms, passed) of the runs the scenario page lists, newest first, page after page."""
    import re
    runs, before = [], ""
    for _ in range(pages):
        _, body = fetch(f"{base}/scenario/{name}{before}")
        rows = re.findall(r'<tr class="(ok|ko)" data-ms="(\d+)"', body)
        if not rows:
            break
        runs += [(int(ms), cls == "ok") for cls, ms in rows]
        m = re.search(r'href="[^"]*\?before=(\d+)', body)
        if not m:
            break
        before = "?before=" + m.group(1)
    return runs


def expected_classes(runs, t0, w, n):
    """Slot classes computed from the listed runs (the same history the strip was made of)."""
    slots = [[0, 0] for _ in range(n)]
    for ms, ok in runs:
        i = (ms - t0) // w
        if 0 <= i < n:
            slots[i][0] += 1
            slots[i][1] += 0 if ok else 1
    def cls(s):
        if s[0] == 0:
            return "n"
        if s[1] == 0:
            return "u"
        return "d" if s[1] >= s[0] else "p"
    return [cls(s) for s in slots]


d = browser()
try:
    # --- overview, in-memory history: one-second slots whose order the API confirms ---------
    d.set_window_size(1280, 900)
    d.get(admin + "/")
    d.execute_script("window.__marker = 1")
    console_errors(d, "the overview")
    no_injection(d, "the overview")
    for name in ["api-health", "flappy", "db/primary"]:
        check(bool(d.find_elements(By.CSS_SELECTOR, f'article[data-name="{name}"]')), f"{name} is listed")
    strip, t0, w, got = slot_classes(d, "flappy")
    runs = listed_runs(admin, "flappy")
    want = expected_classes(runs, t0, w, len(got))
    # The truth, independent of sonde: flap.py answers 200, 200, 503, 503… so the results, oldest
    # first, come in pairs (the first pair may be cut).
    seq = "".join("u" if ok else "d" for _, ok in reversed(runs))
    trimmed = seq[1:] if len(seq) > 1 and seq[0] != seq[1] else seq
    pairs = [trimmed[i:i + 2] for i in range(0, len(trimmed) - 1, 2)]
    check(len(runs) >= 12 and all(p in ("uu", "dd") for p in pairs) and "uudd" in trimmed,
          f"flappy's listed runs follow flap.py's pattern: {seq}")
    # The first and last slots may gain or lose a run between the page and the API: compare the
    # settled middle.
    check(len(got) == 90, f"a strip has 90 slots ({len(got)})")
    check(got[2:-3] == want[2:-3], f"flappy's slots match its runs in order\n     page {''.join(got)}\n     runs {''.join(want)}")
    check({"u", "d"} <= set(got) or {"u", "p"} <= set(got), f"flappy's strip shows passes and failures: {''.join(got)}")
    _, _, _, health = slot_classes(d, "api-health")
    check(set(health) - {"n"} == {"u"}, f"api-health's strip is green only: {''.join(health)}")
    _, _, _, db = slot_classes(d, "db/primary")
    check(set(db) - {"n"} == {"d"}, f"db/primary's strip is red only: {''.join(db)}")
    colours = d.execute_script("""
      const c = {};
      for (const k of ['u', 'd', 'n']) {
        const e = document.querySelector('.strip i.' + k);
        if (e) c[k] = getComputedStyle(e).backgroundColor;
      }
      return c;""")
    check(colours.get("u") == "rgb(31, 157, 85)", f"passing slots are green: {colours}")
    check(colours.get("d") == "rgb(212, 60, 60)", f"failing slots are red: {colours}")
    # Tooltip: hover a failing slot of flappy.
    bad = strip.find_elements(By.CSS_SELECTOR, "i.d, i.p")
    check(bool(bad), "flappy has a failing slot to hover")
    if bad:
        ActionChains(d).move_to_element(bad[-1]).perform()
        tip = d.find_element(By.ID, "tip")
        text = tip.text
        check(tip.is_displayed() and "reason: status" in text and "UTC" in text,
              f"the tooltip shows time and reason: {text!r}")
        shot(d, "overview-tooltip", full=False)
    # Keyboard: focus db/primary's strip, arrow left shows a slot's tooltip.
    s2, _, _, _ = slot_classes(d, "db/primary")
    d.execute_script("arguments[0].focus()", s2)
    s2.send_keys(Keys.END)
    text = d.find_element(By.ID, "tip").text
    check("reason: connect" in text, f"End on a focused strip shows the last slot: {text!r}")
    s2.send_keys(Keys.ESCAPE)
    # Search without reloading the page: the list is fetched and replaced.
    box = d.find_element(By.CSS_SELECTOR, "input[name=q]")
    box.send_keys("flap")
    for _ in range(50):
        if len(d.find_elements(By.CSS_SELECTOR, "article.row")) == 1:
            break
        time.sleep(0.1)
    names = [a.get_attribute("data-name") for a in d.find_elements(By.CSS_SELECTOR, "article.row")]
    check(names == ["flappy"], f"typing in search filters the list: {names}")
    check(d.execute_script("return window.__marker") == 1, "the search did not reload the page")
    check("q=flap" in d.current_url, f"the URL keeps the search: {d.current_url}")
    d.get(admin + "/")
    shot(d, "overview")
    # Dark mode.
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    d.get(admin + "/")
    bg = d.execute_script("return getComputedStyle(document.body).backgroundColor")
    check(bg == "rgb(17, 20, 24)", f"dark mode follows prefers-color-scheme: {bg}")
    shot(d, "overview-dark")
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    # 375 px wide: nothing scrolls sideways.
    d.set_window_size(375, 800)
    d.get(admin + "/")
    sw = d.execute_script("return document.documentElement.scrollWidth")
    check(sw <= 375, f"the overview fits 375 px (scroll width {sw})")
    shot(d, "overview-375")
    d.set_window_size(1280, 900)

    # --- one scenario, the real store ------------------------------------------------------
    d.get(store + "/scenario/api-health")
    console_errors(d, "a scenario page")
    charts = d.find_elements(By.CSS_SELECTOR, "figure.chart")
    captions = [c.find_element(By.TAG_NAME, "figcaption").text for c in charts]
    check(captions == ["Whole run", "Step health (http)", "Step metrics (http)"], f"a chart per step: {captions}")
    for c in charts:
        n = len(c.find_elements(By.CSS_SELECTOR, "circle.pt"))
        check(n > 0, f"chart {c.find_element(By.TAG_NAME, 'figcaption').text!r} has points ({n})")
    phases = [e.text for e in d.find_elements(By.CSS_SELECTOR, "table.waterfall tr.phase td:first-child")]
    check("processing" in phases, f"the waterfall shows the last run's phases: {phases}")
    check(len(d.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")) > 0, "the last runs are listed")
    shot(d, "scenario-store")
    d.get(store + "/scenario/db/primary")
    no_injection(d, "a failing scenario's page")
    kept = d.find_elements(By.CSS_SELECTOR, "table.runs a[href*='run=']")
    check(bool(kept), "a failing run's trace is kept and linked")
    if kept:
        kept[0].click()
        pre = d.find_element(By.CSS_SELECTOR, "#kept pre.trace").text
        check("Connection refused" in pre or "connect" in pre, "the kept trace is shown")
        no_injection(d, "a kept trace")
        shot(d, "scenario-trace")
    _, overview = fetch(store + "/")
    check('class="strip"' in overview and ('class="d"' in overview), "the store's overview has red slots")

    # --- the public page -----------------------------------------------------------------
    d.get(public + "/")
    console_errors(d, "the public page")
    names = [a.get_attribute("data-name") for a in d.find_elements(By.CSS_SELECTOR, "article.row")]
    check(sorted(names) == ["api-health", "flappy"], f"the public page lists public scenarios only: {names}")
    text = d.find_element(By.TAG_NAME, "body").text
    check("Configuration" not in text and "Metrics" not in text, "no admin links on the public page")
    shot(d, "public")
    d.get(public + "/scenario/flappy")
    text = d.find_element(By.TAG_NAME, "body").text
    check("Trace" not in text and "expected 2xx" not in text, "no trace or error text on a public scenario page")
    shot(d, "public-scenario")
    for path in ["/config", "/metrics", "/probe?target=127.0.0.1", "/api/v1/scenarios", "/scenario/db/primary", "/-/reload", "/regions"]:
        code, body = fetch(public + path)
        check(code == 404, f"public {path} answers 404 ({code})")
    # --- the region grid against PromQL ---------------------------------------------------
    at = time.time() - 1
    d.get(f"{admin}/regions?window=1h&at={at:.3f}")
    console_errors(d, "the region grid")
    no_injection(d, "the region grid")
    cells = d.find_elements(By.CSS_SELECTOR, "td.cell")
    shown = {(c.get_attribute("data-scenario"), c.get_attribute("data-region")):
             (c.get_attribute("data-uptime"), c.get_attribute("data-p95"), c.get_attribute("data-steps"),
              c.get_attribute("title")) for c in cells}
    regions = sorted({r for _, r in shown})
    check(regions == ["r1", "r2"], f"the grid has both regions: {regions}")
    def promql(q, by=("scenario", "region")):
        url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q, "time": f"{at:.3f}"})
        _, body = fetch(url)
        out = {}
        for r in json.loads(body)["data"]["result"]:
            out[tuple(r["metric"].get(k, "") for k in by)] = float(r["value"][1])
        return out
    up = promql("avg by (scenario, region) (avg_over_time(sonde_scenario_success[1h]))")
    p95 = promql("histogram_quantile(0.95, sum by (le, scenario, region) (rate(sonde_scenario_duration_seconds_bucket[1h])))")
    check(len(up) >= 6, f"PromQL has uptime for 3 scenarios x 2 regions ({len(up)})")
    for key, v in up.items():
        got = shown.get(key, ("", ""))[0]
        check(got != "" and math.isclose(float(got), v, rel_tol=1e-12), f"grid uptime {key} = PromQL ({got} vs {v})")
    for key, v in p95.items():
        if math.isnan(v):
            continue
        got = shown.get(key, ("", ""))[1]
        check(got != "" and math.isclose(float(got), v, rel_tol=1e-12), f"grid p95 {key} = PromQL ({got} vs {v})")
    step_p95 = promql("histogram_quantile(0.95, sum by (le, scenario, region, step) (rate(sonde_step_duration_seconds_bucket[1h])))",
                      by=("scenario", "region", "step"))
    finite = {k: v for k, v in step_p95.items() if not math.isnan(v)}
    check(len(finite) >= 1, f"PromQL has a per-step p95 ({len(finite)})")
    for (scenario, region, step), v in finite.items():
        cell = shown.get((scenario, region), ("", "", "", ""))
        got = json.loads(cell[2] or "{}").get(step)
        check(got is not None and math.isclose(got, v, rel_tol=1e-12),
              f"grid step p95 {(scenario, region, step)} = PromQL ({got} vs {v})")
        check(step in (cell[3] or ""), f"the tooltip of {(scenario, region)} names step {step}: {cell[3]!r}")
    shot(d, "regions")
finally:
    d.quit()

print(f"browser: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
