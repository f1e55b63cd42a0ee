#!/usr/bin/env python3
"""Medians and ratios of a benches/compare/run.sh results directory.

  table.py RESULTS_DIR [--ratios A/B ...] [--metrics TEXT ...] [--runs]

Reads RESULTS_DIR/<target>.<scenario>.<repeat>.json (osprey-load --json
reports) and prints markdown: one row per metric, the median over the
repeats for each target, then the ratios osprey ÷ ejabberd, osprey ÷
prosody and osprey ÷ osprey-bare (the cost of the default
instrumentation), osprey ÷ osprey-base and osprey-sm ÷ osprey (those of
them whose targets ran), and a second table with each median's spread.

--ratios A/B ...   these ratios instead (e.g. osprey/osprey-base)
--metrics TEXT ... only the metrics whose name contains one of the TEXTs
--runs             a third table: every run's value, in repeat order
"""

import argparse
import glob
import json
import os
import re
import statistics
import sys

TARGETS = ["osprey", "osprey-bare", "osprey-base", "osprey-sm", "osprey-mam", "prosody", "ejabberd"]
RATIOS = [
    ("osprey", "ejabberd"),
    ("osprey", "prosody"),
    ("osprey", "osprey-bare"),
    ("osprey", "osprey-base"),
    ("osprey-sm", "osprey"),
    ("osprey-mam", "osprey"),
]


def res(kind, *path):
    def get(r):
        v = r["result"][kind]
        for p in path:
            v = v[p]
        return v

    return get


def scaled(get, factor):
    def f(r):
        v = get(r)
        return None if v is None else v * factor

    return f


# (scenario file name, metric, getter, "↑" higher is better / "↓" lower)
METRICS = [
    ("login", "logins/s", res("login", "logins_per_s"), "↑"),
    ("login", "login latency p50 (ms)", res("login", "latency", "p50_ms"), "↓"),
    ("login", "login latency p99 (ms)", res("login", "latency", "p99_ms"), "↓"),
    ("login", "server CPU per login (µs)", scaled(res("login", "cpu_s_per_1k"), 1000), "↓"),
    ("login-sha256", "SCRAM-SHA-256 logins/s", res("login", "logins_per_s"), "↑"),
    ("login-sha256", "SCRAM-SHA-256 login latency p99 (ms)",
     res("login", "latency", "p99_ms"), "↓"),
    ("login-sha256", "SCRAM-SHA-256 server CPU per login (µs)",
     scaled(res("login", "cpu_s_per_1k"), 1000), "↓"),
    ("idle", "RSS per idle session, plain (KiB)",
     scaled(res("idle", "rss_per_session_bytes"), 1 / 1024), "↓"),
    ("idle-tls", "RSS per idle session, TLS (KiB)",
     scaled(res("idle", "rss_per_session_bytes"), 1 / 1024), "↓"),
    ("idle", "server CPU during the idle hold (ms/s)",
     scaled(res("idle", "cpu_s_per_s_idle"), 1000), "↓"),
    ("chat", "chat max rate: delivered msgs/s", res("chat", "delivered_per_s"), "↑"),
    ("chat", "chat max rate: latency p50 (ms)", res("chat", "latency", "p50_ms"), "↓"),
    ("chat", "chat max rate: latency p99 (ms)", res("chat", "latency", "p99_ms"), "↓"),
    ("chat", "chat max rate: server CPU per msg (µs)",
     scaled(res("chat", "cpu_s_per_1k"), 1000), "↓"),
    ("chat", "chat max rate: generator CPU (% of its core)",
     lambda r: r["generator_cpu_s"] / r["elapsed_s"] * 100, "·"),
    ("chat-rate", "chat fixed rate: delivered msgs/s", res("chat", "delivered_per_s"), "↑"),
    ("chat-rate", "chat fixed rate: latency p50 (ms)", res("chat", "latency", "p50_ms"), "↓"),
    ("chat-rate", "chat fixed rate: latency p99 (ms)", res("chat", "latency", "p99_ms"), "↓"),
    ("chat-rate", "chat fixed rate: latency p99.9 (ms)", res("chat", "latency", "p999_ms"), "↓"),
    ("chat-rate", "chat fixed rate: server CPU per msg (µs)",
     scaled(res("chat", "cpu_s_per_1k"), 1000), "↓"),
    ("mixed", "mixed: msgs delivered", res("mixed", "delivered"), "="),
    ("mixed", "mixed: latency p50 (ms)", res("mixed", "latency", "p50_ms"), "↓"),
    ("mixed", "mixed: latency p99 (ms)", res("mixed", "latency", "p99_ms"), "↓"),
    ("mixed", "mixed: login latency p99 (ms)", res("mixed", "login_latency", "p99_ms"), "↓"),
    ("mixed", "mixed: server CPU (s)", lambda r: r["server"]["cpu_seconds"], "↓"),
    ("mixed", "mixed: server RSS at end (MiB)",
     lambda r: r["server"]["rss_after_bytes"] / 1048576, "↓"),
]


def lost(r):
    k = next(iter(r["result"]))
    v = r["result"][k]
    return v.get("lost", 0)


def failed(r):
    k = next(iter(r["result"]))
    v = r["result"][k]
    return v.get("failed", 0) + v.get("login_failed", 0) + v.get("dropped", 0)


def load(d):
    """{(target, scenario): [report, ...]}, in repeat order."""
    found = {}
    for path in glob.glob(os.path.join(d, "*.json")):
        m = re.match(r"(.+)\.([a-z0-9-]+)\.(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            found.setdefault((m.group(1), m.group(2)), []).append((int(m.group(3)), json.load(f)))
    return {k: [r for _, r in sorted(v, key=lambda x: x[0])] for k, v in found.items()}


def fmt(v):
    if v is None:
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("--ratios", nargs="+", metavar="A/B")
    ap.add_argument("--metrics", nargs="+", metavar="TEXT")
    ap.add_argument("--runs", action="store_true")
    args = ap.parse_args()
    runs = load(args.results)
    targets = [t for t in TARGETS if any(k[0] == t for k in runs)]
    targets += sorted({k[0] for k in runs} - set(targets))
    wanted = RATIOS
    if args.ratios:
        wanted = [tuple(r.split("/", 1)) for r in args.ratios if "/" in r]
    ratios = [(a, b) for a, b in wanted if a in targets and b in targets]
    metrics = [
        m for m in METRICS
        if not args.metrics or any(t in m[1] for t in args.metrics)
    ]

    med, spread, each = {}, {}, {}
    for scen, name, get, _ in metrics:
        for t in targets:
            vals = []
            for r in runs.get((t, scen), []):
                try:
                    v = get(r)
                except (KeyError, TypeError):
                    v = None
                if v is not None:
                    vals.append(v)
            if vals:
                each[(name, t)] = vals
                m = statistics.median(vals)
                med[(name, t)] = m
                spread[(name, t)] = (
                    (max(vals) - min(vals)) / abs(m) * 100 if m else 0.0,
                    len(vals),
                )

    head = ["metric"] + targets + [f"{a} ÷ {b}" for a, b in ratios]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    for _, name, _, better in metrics:
        if not any((name, t) in med for t in targets):
            continue
        row = [f"{name} {better}"]
        row += [fmt(med.get((name, t))) for t in targets]
        for a, b in ratios:
            va, vb = med.get((name, a)), med.get((name, b))
            row.append(f"{va / vb:.2f}" if va is not None and vb else "–")
        print("| " + " | ".join(row) + " |")
    # Correctness, summed over every run (not medians): must be 0.
    for label, fn in [("lost messages, all runs (must be 0)", lost),
                      ("failed logins/sessions, all runs", failed)]:
        row = [label]
        for t in targets:
            row.append(str(sum(fn(r) for (tt, _), rs in runs.items() if tt == t for r in rs)))
        row += [""] * len(ratios)
        print("| " + " | ".join(row) + " |")

    print()
    print("Spread of each median: (max − min) / median over the repeats, and the number of runs.")
    print()
    print("| metric | " + " | ".join(targets) + " |")
    print("|---|" + "|".join(["--:"] * len(targets)) + "|")
    for _, name, _, _ in metrics:
        if not any((name, t) in spread for t in targets):
            continue
        cells = []
        for t in targets:
            s = spread.get((name, t))
            cells.append(f"{s[0]:.0f} % (n={s[1]})" if s else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")

    if args.runs:
        print()
        print("Every run, in repeat order.")
        print()
        print("| metric | " + " | ".join(targets) + " |")
        print("|---|" + "|".join(["--:"] * len(targets)) + "|")
        for _, name, _, _ in metrics:
            if not any((name, t) in each for t in targets):
                continue
            cells = [", ".join(fmt(v) for v in each.get((name, t), [])) or "–" for t in targets]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
