#!/usr/bin/env python3
"""The table of bench/growth.sh (issue 16, item 5): per table size, Ferry's rows/s beside the pipe's
in the same rounds, CPU per million rows, planning, chunks and memory, and whether the cost stays
flat within 10 % as the table grows."""

import argparse
import csv
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from summarize import breakdown  # noqa: E402  (bench/summarize.py: planning and chunks from the logs)

FLAT = 0.10


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rss_mib(field):
    """Peak RSS of `ferry local` from run.sh's RSS column (`ferry-local=MiB/CPU`)."""
    try:
        return float(field.split("=", 1)[1].split("/", 1)[0])
    except (IndexError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--header", required=True)
    ap.add_argument("--sizes", required=True, help='millions of rows, e.g. "1 5 20"')
    ap.add_argument("--rounds", type=int, required=True)
    a = ap.parse_args()

    runs = {}
    for r in csv.reader(open(a.runs), delimiter="\t"):
        name, rnd, status, wall, tool, pg, _busy, other, check = r[:9]
        job = float(r[11]) if len(r) > 11 and r[11] else None
        runs[(name, int(rnd))] = dict(ok=status == "ok", wall=float(wall), tool=float(tool), pg=float(pg),
                                      other=float(other), check=check, rss=rss_mib(r[9]) if len(r) > 9 else None,
                                      job=job)
    sizes = [int(s) for s in a.sizes.split()]
    rows_out, summary = [], {}
    for m in sizes:
        n = m * 1_000_000
        ratios, job_ratios, f_rps, p_rps, f_cpu, f_pg, p_cpu, p_pg, plan, chunks, rss, other, checks = (
            [] for _ in range(13))
        ok = 0
        for rnd in range(1, a.rounds + 1):
            f, p = runs.get((f"local2-{m}m", rnd)), runs.get((f"pipe-{m}m", rnd))
            for x in (f, p):
                if x:
                    checks.append(x["check"])
                    other.append(x["other"])
            if not (f and p and f["ok"] and p["ok"]):
                continue
            ok += 1
            # the ratio within a round: both ran back to back under the same load
            ratios.append(p["wall"] / f["wall"])
            if f["job"]:
                job_ratios.append(p["wall"] / f["job"])
            f_rps.append(n / f["wall"])
            p_rps.append(n / p["wall"])
            f_cpu.append(f["tool"] / m)
            f_pg.append(f["pg"] / m)
            p_cpu.append(p["tool"] / m)
            p_pg.append(p["pg"] / m)
            rss.append(f["rss"])
            b = breakdown(a.logs, f"local2-{m}m", rnd)
            if b:
                plan.append(b["plan"])
                chunks.append(b["chunks"])
        s = dict(ratio=med(ratios), job_ratio=med(job_ratios), cpu=med(f_cpu), pg=med(f_pg), plan=med(plan),
                 rss=max([x for x in rss if x] or [0]))
        s["plan_m"] = s["plan"] / m if s["plan"] is not None else None
        summary[m] = s
        fmt = lambda v, f: "" if v is None else f.format(v)  # noqa: E731
        rows_out.append(
            f"| {n:,} | {ok}/{a.rounds} | {fmt(med(f_rps), '{:,.0f}')} | {fmt(med(p_rps), '{:,.0f}')} | "
            f"**{fmt(s['ratio'], '{:.2f}')}×** ({' / '.join(f'{x:.2f}' for x in ratios)}) | {fmt(s['job_ratio'], '{:.2f}×')} | "
            f"{fmt(s['cpu'], '{:.3f}')} | {fmt(s['pg'], '{:.2f}')} | {fmt(med(p_pg), '{:.2f}')} | "
            f"{fmt(med(chunks), '{:.0f}')} | {fmt(s['plan'], '{:.2f}')} | {fmt(s['rss'], '{:.1f}')} | "
            f"{fmt(med(other), '{:.1f}')} | {', '.join(sorted(set(checks)))} |")

    print(open(a.header).read().rstrip())
    print()
    print("Each round runs, per size, the pipe and then `ferry local --workers 2` on the same table (pipe-1m local2-1m "
          "pipe-5m local2-5m pipe-20m local2-20m); medians over the rounds where both passed their check. "
          "*Ferry/pipe* = Ferry's rows/s over the pipe's in the same round (median, then each round). "
          "*CPU-s per M rows* = user+sys of `ferry local` (Ferry) or of the cluster's postgres processes, per million rows. "
          "*Ferry/pipe, job only* = the same with Ferry's time from `job submitted` to `Parallel processing complete` "
          "(without the ~1 s `ferry local` takes to start its coordinator and workers and to stop). "
          "*planning* = `job submitted` → `job planned` in Ferry's log. *other CPU* = CPU-s of everything else on the "
          "machine during a run (other engineers' builds), median over both tools' runs.")
    print()
    print("| rows | rounds ok | Ferry rows/s | pipe rows/s | Ferry/pipe (per round) | Ferry/pipe, job only | Ferry CPU-s per M rows | "
          "postgres CPU-s per M rows (Ferry) | postgres CPU-s per M rows (pipe) | chunks | planning s | Ferry peak RSS MiB | "
          "other CPU-s | check |")
    print("|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows_out))
    print()
    base = summary.get(sizes[0], {})
    # "flat" is about cost growing with the table: a ratio may not fall, a cost may not rise, by more than 10 %
    for key, what, worse in (("ratio", "Ferry/pipe rows/s", -1), ("job_ratio", "Ferry/pipe rows/s, job only", -1),
                             ("cpu", "Ferry CPU-s per million rows", 1), ("pg", "postgres CPU-s per million rows under Ferry", 1),
                             ("plan_m", "planning s per million rows", 1), ("rss", "Ferry peak RSS", 1)):
        b = base.get(key)
        if not b:
            continue
        devs = {m: summary[m][key] / b - 1 for m in sizes[1:] if summary[m].get(key) is not None}
        flat = all(worse * d <= FLAT for d in devs.values())
        parts = ", ".join(f"{m}m {d * 100:+.1f} %" for m, d in devs.items())
        print(f"- {what} against {sizes[0]}m: {parts}: no {'fall' if worse < 0 else 'rise'} over {FLAT * 100:.0f} %: "
              f"{'met' if flat else '**missed**'}")

if __name__ == "__main__":
    main()
