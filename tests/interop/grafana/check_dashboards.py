"""Check examples/grafana/ against a real Prometheus that scrapes sonde (tests/interop/grafana.sh).

For every dashboard: the structure Grafana's current JSON model needs (schemaVersion >= 39, unique
uid and panel ids, a gridPos, the ${datasource} variable on every panel and query); every query
variable's label_values() resolves to real values; every panel query, with the variables
substituted, runs without error and returns series. A single-value variable (the scenario of the
scenario dashboard) is tried with each of its values, and a query must return series for at least
one of them (a certificate panel has data only for TLS scenarios). Multi-value variables get all
their values, as Grafana's "All" does. The provisioning file must point at a folder and be valid.

Usage: check_dashboards.py PROMETHEUS_URL examples/grafana   (exit 0 ok, 1 problems; stdlib only)
"""

import itertools
import json
import pathlib
import re
import sys
import urllib.parse
import urllib.request

BUILTINS = {"__rate_interval": "1m", "__range": "10m", "__interval": "15s", "__range_s": "600"}
REGEX_SPECIAL = re.compile(r"([.*+?()|\[\]{}^$\\])")


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, params):
        q = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=30) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # Prometheus answers bad queries with 400 + JSON
            body = json.load(e)
        if body.get("status") != "success":
            raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr):
        return self.get("/api/v1/query", {"query": expr})["result"]

    def label_values(self, label, selector):
        params = {"match[]": [selector]} if selector else {}
        return self.get(f"/api/v1/label/{label}/values", params)


def substitute(text, values):
    def one(m):
        name = m.group(1) or m.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in values:
            raise KeyError(f"unknown variable ${name}")
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, text)


def regex_of(vals):
    """As Grafana's Prometheus data source formats a multi-value variable: each value's regex
    metacharacters escaped with a backslash, itself escaped for PromQL's double-quoted string."""
    return "|".join(REGEX_SPECIAL.sub(r"\\\\\1", v) for v in vals)


def structure(board, name):
    problems = []
    if not isinstance(board.get("schemaVersion"), int) or board["schemaVersion"] < 39:
        problems.append(f"{name}: schemaVersion {board.get('schemaVersion')} < 39")
    for key in ("uid", "title", "panels", "templating", "time"):
        if key not in board:
            problems.append(f"{name}: no {key}")
    names = [v["name"] for v in board.get("templating", {}).get("list", [])]
    if "datasource" not in names:
        problems.append(f"{name}: no datasource variable")
    ids = [p.get("id") for p in board.get("panels", [])]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"{name}: panel ids missing or not unique: {ids}")
    for p in board.get("panels", []):
        where = f"{name} / {p.get('title')!r}"
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")) or g["x"] + g["w"] > 24:
            problems.append(f"{where}: bad gridPos {g}")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"{where}: datasource is not ${{datasource}}")
        if not p.get("targets"):
            problems.append(f"{where}: no queries")
        for t in p.get("targets", []):
            if not t.get("expr") or not t.get("refId"):
                problems.append(f"{where}: a query without expr or refId")
    return problems


def resolve_variables(prom, board, fixed):
    """Values of every query variable, in order; `fixed` pins single-value ones."""
    values, lists = {}, {}
    for v in board["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((?:(.*),\s*)?(\w+)\)", q.strip())
        if not m:
            raise ValueError(f"variable ${v['name']}: unsupported query {q!r}")
        selector = substitute(m.group(1), values) if m.group(1) else None
        found = prom.label_values(m.group(2), selector)
        if not found:
            raise ValueError(f"variable ${v['name']}: {q!r} has no values")
        lists[v["name"]] = found
        if v.get("multi") or v.get("includeAll"):
            values[v["name"]] = regex_of(found)
        else:
            values[v["name"]] = fixed.get(v["name"], found[0])
    return values, lists


def check_board(prom, board, name):
    problems = structure(board, name)
    _, lists = resolve_variables(prom, board, {})
    singles = [v["name"] for v in board["templating"]["list"]
               if v["type"] == "query" and not (v.get("multi") or v.get("includeAll"))]
    combos = [dict(zip(singles, c)) for c in itertools.product(*(lists[s] for s in singles))]
    series = {}  # (panel, refId) -> best count
    for fixed in combos:
        values, _ = resolve_variables(prom, board, fixed)
        values["datasource"] = "prometheus"
        for p in board["panels"]:
            for t in p.get("targets", []):
                key = (p["title"], t["refId"])
                expr = substitute(t["expr"], values)
                try:
                    n = len(prom.query(expr))
                except ValueError as e:
                    problems.append(f"{name} / {p['title']!r} [{t['refId']}] with {fixed}: error {e}: {expr}")
                    n = 0
                series[key] = max(series.get(key, 0), n)
    for (title, ref), n in series.items():
        if n == 0:
            problems.append(f"{name} / {title!r} [{ref}]: no series for any of {singles or 'the'} values")
        else:
            print(f"ok   {name} / {title} [{ref}]: {n} series")
    return problems


def main(url, root):
    prom = Prometheus(url)
    # The checks below must be able to fail: an unknown metric has no series, bad PromQL errors.
    assert prom.query("sonde_no_such_metric_total") == [], "a made-up metric returned series"
    try:
        prom.query("sum(")
        raise AssertionError("Prometheus accepted broken PromQL")
    except ValueError:
        pass
    root = pathlib.Path(root)
    problems = []
    boards = sorted((root / "dashboards").glob("*.json"))
    if not boards:
        problems.append("no dashboards")
    uids = set()
    for f in boards:
        board = json.loads(f.read_text())
        if board.get("uid") in uids:
            problems.append(f"{f.name}: uid {board.get('uid')} used twice")
        uids.add(board.get("uid"))
        try:
            problems += check_board(prom, board, f.name)
        except (ValueError, KeyError) as e:
            problems.append(f"{f.name}: {e}")
    prov = (root / "provisioning" / "dashboards" / "sonde.yaml").read_text()
    if "apiVersion: 1" not in prov or "path:" not in prov:
        problems.append("provisioning/dashboards/sonde.yaml: no apiVersion 1 or no path")
    for p in problems:
        print(f"FAIL {p}")
    print(f"grafana: {len(boards)} dashboards, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
