"""Markdown table of bench/connectors.sh's runs: medians per pair and tool, the ratios and goals.

Reads the tab-separated runs (round, pair, tool, rows, seconds, tool CPU s, db CPU s, rows
landed) named by argv[1]; prints markdown on stdout.
"""
import math
import statistics
import sys
from collections import defaultdict

NAMES = {"pg": "PostgreSQL", "my": "MariaDB", "sq": "SQLite"}


def pair_name(p):
    s, d = p.split(":")
    return f"{NAMES[s]} → {NAMES[d]}"


def median(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


def main(path):
    runs = defaultdict(list)
    pairs = []
    for line in open(path):
        rnd, pair, tool, rows, secs, tcpu, dcpu, landed = line.rstrip("\n").split("\t")
        if pair not in pairs:
            pairs.append(pair)
        ok = landed == rows
        runs[(pair, tool)].append(
            dict(rate=int(rows) / float(secs) if ok and secs != "nan" else math.nan,
                 secs=float(secs), tcpu=float(tcpu), dcpu=float(dcpu), ok=ok))

    def stat(pair, tool, key):
        return median([r[key] for r in runs[(pair, tool)]])

    def checked(pair, tool):
        rs = runs[(pair, tool)]
        return f"{sum(r['ok'] for r in rs)}/{len(rs)}"

    print("| pair | tool | median rows/s | runs (rows/s) | median s | tool CPU s | db CPU s | rows landed |")
    print("|---|---|---:|---|---:|---:|---:|---|")
    for pair in pairs:
        for tool in ("ferry", "ferry-old", "sling", "loader"):
            if (pair, tool) not in runs:
                continue
            each = ", ".join("failed" if math.isnan(r["rate"]) else f"{r['rate']:,.0f}"
                             for r in runs[(pair, tool)])
            print(f"| {pair_name(pair)} | {tool} | {stat(pair, tool, 'rate'):,.0f} | {each} | "
                  f"{stat(pair, tool, 'secs'):.2f} | {stat(pair, tool, 'tcpu'):.2f} | "
                  f"{stat(pair, tool, 'dcpu'):.2f} | {checked(pair, tool)} |")
    print()
    print("| pair | Ferry / loader | goal ≥ 0.7× | Ferry / Sling | goal > 1× |")
    print("|---|---:|---|---:|---|")
    for pair in pairs:
        if pair == "pg:pg":
            continue
        f = stat(pair, "ferry", "rate")
        vs_l = f / stat(pair, "loader", "rate")
        vs_s = f / stat(pair, "sling", "rate")
        verdict = lambda v, goal: "n/a" if math.isnan(v) else ("met" if v >= goal else "**missed**")
        print(f"| {pair_name(pair)} | {vs_l:.2f} | {verdict(vs_l, 0.7)} | {vs_s:.2f} | "
              f"{verdict(vs_s, 1.0000001)} |")
    olds = [p for p in pairs if p != "pg:pg" and (p, "ferry-old") in runs]
    if olds:
        print()
        print("| pair | Ferry now / Ferry at the old commit (rows/s, medians) |")
        print("|---|---:|")
        for pair in olds:
            new, old = stat(pair, "ferry", "rate"), stat(pair, "ferry-old", "rate")
            print(f"| {pair_name(pair)} | {new / old:.2f} |")
    if ("pg:pg", "ferry-old") in runs:
        new, old = stat("pg:pg", "ferry", "rate"), stat("pg:pg", "ferry-old", "rate")
        print()
        print(f"PostgreSQL → PostgreSQL: Ferry now / Ferry at the old commit = {new / old:.2f} "
              f"({new:,.0f} vs {old:,.0f} rows/s, medians).")


if __name__ == "__main__":
    main(sys.argv[1])
