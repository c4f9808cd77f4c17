#!/usr/bin/python3
"""Draws each dashboard as a PNG from the same queries against a Prometheus, laid out as Grafana lays it out.

Grafana is not in Debian, so this is what a reader who never ran it can look at: every panel in its grid
position with its title; time series as lines (and the alert threshold where the panel draws one), tiles as
their value coloured and named as Grafana would (thresholds, value mappings, "no data"), tables as their first
rows. Run by tests/e2e/dashboards_e2e_test.cc when PGPULSE_RENDER_DASHBOARDS names an output directory
(dashboards/render.sh does that). Needs python3-matplotlib (tests/deps.sh).
Usage: render.py --prometheus http://127.0.0.1:PORT --out DIR [--minutes N] [--suffix S] [--var NAME=VALUE]...
                 dashboard.json...
"""

import argparse
import json
import math
import os
import re
import sys
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"green": "#56a64b", "orange": "#ff9830", "red": "#e02f44", "blue": "#3274d9", "text": "#444444",
          "yellow": "#fade2a"}


def api(base, path, params):
    url = base + path + "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError("%s: %s" % (url, body))
    return body["data"]["result"]


def substitute(text, values):
    def one(m):
        name = (m.group(1) or m.group(2)).split(":")[0]
        return values.get(name, m.group(0))
    return re.sub(r"\$\{([^}]+)\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, text)


def regex_escape(v):
    return "".join("\\\\" + c if c in "\\^$.|?*+()[]{}" else c for c in v)


def resolve(base, dashboard, step, preferred, found_values=None):
    """Variable name -> the value substituted, as Grafana would; found_values (if given) gets each query
    variable's values, for repeated rows."""
    values = {"__rate_interval": "10s", "__interval": "%ds" % step, "__range": "5m", "__range_s": "300"}
    for v in dashboard["templating"]["list"]:
        name, kind = v["name"], v["type"]
        if kind == "custom":
            values[name] = v["current"]["value"]
        if kind != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.match(r"^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", substitute(q, values))
        found = sorted({r["metric"].get(m.group(2), "") for r in
                        api(base, "/api/v1/query", {"query": "group by (%s) (last_over_time(%s[1h]))"
                                                    % (m.group(2), m.group(1))})} - {""})
        if found_values is not None:
            found_values[name] = found
        if not found and v.get("includeAll") and v.get("allValue"):
            values[name] = v["allValue"]  # Grafana's All of a variable without values (target, one target)
        elif not found:
            values[name] = "no-value"
        elif v.get("multi") or v.get("includeAll"):
            joined = "|".join(regex_escape(f) for f in found)
            values[name] = joined if len(found) == 1 else "(" + joined + ")"
        else:
            values[name] = regex_escape(preferred.get(name, found[0]))
    return values


def legend(fmt, metric):
    fmt = "" if fmt == "__auto" else fmt
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt or "")
    return " ".join(text.split()) or ",".join("%s=%s" % kv for kv in metric.items() if kv[0] != "__name__")


def fmt_value(v, unit):
    if v is None or math.isnan(v):
        return "NaN"
    if unit == "percentunit":
        return "%.1f%%" % (100 * v)
    if unit in ("bytes", "Bps"):
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(v) < 1024:
                return "%.3g %s%s" % (v, suffix, "/s" if unit == "Bps" else "")
            v /= 1024
        return "%.3g PiB" % v
    if unit in ("s", "dtdurations"):
        for size, suffix in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
            if abs(v) >= size:
                return "%.3g %s" % (v / size, suffix)
        return "%.3g ms" % (v * 1000) if v else "0 s"
    return "%.4g" % v + ("" if unit in ("none", "short", "") else " " + unit.replace("suffix:", ""))


def tile_look(panel, v):
    """(text, colour) a stat tile shows for value v: value mappings first, else thresholds."""
    defaults = panel["fieldConfig"]["defaults"]
    for m in defaults.get("mappings", []):
        if m["type"] == "special" and math.isnan(v) and m["options"]["match"] in ("nan", "null+nan"):
            r = m["options"]["result"]
            return r.get("text", "NaN"), COLORS.get(r.get("color"), "#888888")
        if m["type"] == "value" and not math.isnan(v):
            for key, r in m["options"].items():
                if float(key) == v:
                    return r.get("text", key), COLORS.get(r.get("color"), "#888888")
    color = "#888888"
    if not math.isnan(v):
        for s in defaults.get("thresholds", {}).get("steps", []):
            if s["value"] is None or v >= s["value"]:
                color = COLORS.get(s["color"], "#888888")
    return fmt_value(v, defaults.get("unit", "")), color


def draw_panel(ax, base, panel, values, start, end, step):
    ax.set_title(panel.get("title", ""), fontsize=8, loc="left")
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    if panel["type"] == "timeseries":
        for t in panel["targets"]:
            for r in api(base, "/api/v1/query_range", {"query": substitute(t["expr"], values), "start": start,
                                                        "end": end, "step": step})[:12]:
                xs = [(float(p[0]) - end) / 60 for p in r["values"]]
                ys = [float(p[1]) for p in r["values"]]
                ax.plot(xs, ys, linewidth=0.8, label=legend(t.get("legendFormat"), r["metric"])[:40])
        style = panel["fieldConfig"]["defaults"].get("custom", {}).get("thresholdsStyle", {}).get("mode", "off")
        if style != "off":
            for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]:
                if s["value"] is not None:
                    ax.axhline(s["value"], color=COLORS.get(s["color"], "#888"), linestyle="--", linewidth=0.8)
        ax.tick_params(labelsize=6)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: fmt_value(v, unit)))
        ax.set_xlabel("minutes", fontsize=6)
        if ax.lines:
            ax.legend(fontsize=5, loc="upper left", framealpha=0.5)
        else:
            ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set_xticks([])
    ax.set_yticks([])
    rows = []
    for t in panel["targets"]:
        for r in api(base, "/api/v1/query", {"query": substitute(t["expr"], values), "time": end}):
            rows.append((legend(t.get("legendFormat"), r["metric"]), float(r["value"][1]), r["metric"]))
    if not rows:
        text = panel["fieldConfig"]["defaults"].get("noValue", "No data")
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, transform=ax.transAxes)
        return
    if panel["type"] in ("stat", "gauge", "bargauge"):
        rows = rows[:4]
        for i, (name, v, _) in enumerate(rows):
            text, color = tile_look(panel, v)
            if panel.get("options", {}).get("textMode") == "name":
                text = name.split(" ")[0]
            x0 = i / len(rows)
            ax.add_patch(plt.Rectangle((x0 + 0.01, 0.05), 1 / len(rows) - 0.02, 0.8, color=color, alpha=0.85,
                                       transform=ax.transAxes))
            ax.text(x0 + 0.5 / len(rows), 0.5, text, ha="center", va="center", fontsize=10, color="white",
                    weight="bold", transform=ax.transAxes)
            ax.text(x0 + 0.5 / len(rows), 0.12, name[:28], ha="center", va="center", fontsize=5, color="white",
                    transform=ax.transAxes)
        return
    for i, (name, v, metric) in enumerate(rows[:8]):
        ax.text(0.01, 0.9 - i * 0.11, "%s  %s" % (name[:60], fmt_value(v, unit)), fontsize=6, va="top",
                family="monospace", transform=ax.transAxes)


def render(base, path, out, minutes, suffix="", preferred=None):
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    end = time.time()
    start = end - minutes * 60
    step = max(1, int(minutes * 60 / 200))
    found = {}
    values = resolve(base, dashboard, step, preferred or {}, found)
    panels = []  # (panel, variable values for it)
    repeat = None  # (variable, the row and the panels under it) while in a repeated row
    shift = 0  # grid rows the copies of repeated rows added above
    for p in dashboard["panels"] + [{"type": "row", "end": True}]:
        if p["type"] == "row" and repeat:
            # A row repeated per value of its variable (the fleet view): one copy per value, stacked, each
            # querying that value only.
            name, group = repeat
            height = max(q["gridPos"]["y"] + q["gridPos"]["h"] for q in group) - group[0]["gridPos"]["y"]
            for i, value in enumerate(found.get(name, [])):
                one = dict(values, **{name: regex_escape(value)})
                for q in group:
                    q = dict(q, gridPos=dict(q["gridPos"], y=q["gridPos"]["y"] + shift + i * height))
                    if q["type"] == "row":
                        q["title"] = q["title"].replace("$" + name, value)
                    panels.append((q, one))
            shift += (len(found.get(name, [])) - 1) * height
            repeat = None
        if p.get("end"):
            break
        if p["type"] == "row" and p.get("repeat"):
            repeat = (p["repeat"], [p])
        elif repeat:
            repeat[1].append(p)
        else:
            for q in [p] + p.get("panels", []):
                panels.append((dict(q, gridPos=dict(q["gridPos"], y=q["gridPos"]["y"] + shift)), values))
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p, _ in panels)
    unit = 0.32  # inches per grid row
    fig = plt.figure(figsize=(16, bottom * unit + 0.6))
    fig.suptitle("%s  (last %d min, Prometheus at %s)" % (dashboard["title"], minutes, "the e2e test"),
                 fontsize=10, x=0.01, ha="left")
    height = bottom * unit + 0.6
    for p, values in panels:
        g = p["gridPos"]
        left, width = g["x"] / 24 + 0.004, g["w"] / 24 - 0.008
        top = 1 - (0.5 + g["y"] * unit) / height
        h = g["h"] * unit / height
        if p["type"] == "row":
            fig.text(left, top - 0.3 * h, p["title"], fontsize=9, weight="bold")
            continue
        ax = fig.add_axes([left + 0.01, top - h + 0.35 * unit / height, width - 0.015, h - 0.65 * unit / height])
        try:
            draw_panel(ax, base, p, values, start, end, step)
        except Exception as e:  # one broken panel shows its error, the rest still draws
            ax.text(0.5, 0.5, "error: %s" % str(e)[:80], ha="center", fontsize=6, transform=ax.transAxes)
    name = os.path.join(out, os.path.basename(path).replace(".json", suffix + ".png"))
    fig.savefig(name, dpi=72)
    plt.close(fig)
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--suffix", default="", help="added to each PNG's name, e.g. -standby-down")
    parser.add_argument("--var", action="append", default=[], help="NAME=VALUE for a single-value variable")
    parser.add_argument("dashboards", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for path in args.dashboards:
        print("render.py: wrote", render(args.prometheus.rstrip("/"), path, args.out, args.minutes, args.suffix,
                                           dict(v.split("=", 1) for v in args.var)))


if __name__ == "__main__":
    sys.exit(main())
