#!/usr/bin/env python3
"""Turns bench/out/runs.tsv into the markdown report of bench/run.sh (RESULTS.md).

runs.tsv columns: config, round, status (ok|FAIL), wall s, tool CPU s, postgres CPU s,
machine busy CPU s, other CPU s, check, Ferry processes ("name=MiB/CPUs;..."), autovacuum jobs.
configs.tsv columns: config, table, group, rows, label.
"""
import argparse
import csv
import datetime
import glob
import os
import re
import statistics

GOAL_RSS_MIB = 64


def load(args):
    configs, order = {}, []
    for name, table, group, rows, label in csv.reader(open(args.configs), delimiter="\t"):
        configs[name] = dict(name=name, table=table, group=group, rows=int(rows), label=label, runs=[])
        order.append(name)
    for r in csv.reader(open(args.runs), delimiter="\t"):
        name, rnd, status, wall, tool, pg, busy, other, check, rss, av, js = (r + [""] * 12)[:12]
        procs = {}
        for item in filter(None, rss.split(";")):
            pname, val = item.split("=", 1)
            mib, cpu = val.split("/", 1)
            procs[pname] = (None if mib in ("-", "?") else float(mib), float(cpu or 0))
        configs[name]["runs"].append(dict(
            round=int(rnd), ok=status == "ok", wall=float(wall), tool=float(tool), pg=float(pg),
            busy=float(busy), other=float(other), check=check, procs=procs, av=av,
            job=float(js) if js else None))
    return configs, order


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ts(line):
    try:
        return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
    except (ValueError, IndexError):
        return None


def breakdown(logs, name, rnd):
    """Phases of one Ferry run from its logs: planning, copy phase, chunks, and (distributed
    workers log at info) the per-worker gaps between one chunk's commit and the next chunk's start."""
    base = os.path.join(logs, f"{name}-r{rnd}.log")
    coord = base + ".coord.log" if os.path.exists(base + ".coord.log") else base
    if not os.path.exists(coord):
        return None
    b = {}
    for line in open(coord, errors="replace"):
        line = ANSI.sub("", line)
        t = ts(line)
        if t is None:
            continue
        if "job submitted" in line and "sub" not in b:
            b["sub"] = t
        elif "job planned" in line and "planned" not in b:
            b["planned"] = t
        elif "Parallel processing complete" in line and "done" not in b:
            b["done"] = t
        m = re.search(r"with (\d+) workers, (\d+) chunks", line)
        if m:
            b["chunks"] = int(m.group(2))
    if not {"sub", "planned", "done"} <= b.keys():
        return None
    out = dict(plan=b["planned"] - b["sub"], copy=b["done"] - b["planned"], chunks=b.get("chunks"))
    gaps, secs, idle = [], [], []
    for wlog in sorted(glob.glob(base + ".w*.log")):
        prev, wgaps = None, []
        for line in open(wlog, errors="replace"):
            line = ANSI.sub("", line)
            if "chunk committed" not in line:
                continue
            t, m = ts(line), re.search(r"secs=([0-9.]+)", line)
            if t is None or not m:
                continue
            sec = float(m.group(1))
            secs.append(sec)
            if prev is not None:
                wgaps.append(t - prev - sec)
            prev = t
        gaps += wgaps
        if wgaps:
            idle.append(sum(wgaps))
    if secs:
        out["chunk_ms"] = statistics.median(secs) * 1e3
    if gaps:
        out["gap_ms"] = statistics.median(gaps) * 1e3
        out["idle"] = statistics.mean(idle)
    return out


def med(vals):
    vals = list(vals)
    return statistics.median(vals) if vals else None


def stats(c):
    ok = [r for r in c["runs"] if r["ok"]]
    s = dict(ok=ok, n=len(c["runs"]), nfail=len(c["runs"]) - len(ok))
    if ok:
        s["wall"] = med(r["wall"] for r in ok)
        s["rps"] = c["rows"] / s["wall"]
        for k in ("tool", "pg", "busy", "other"):
            s[k] = med(r[k] for r in ok)
        s["job"] = med(r["job"] for r in ok if r["job"] is not None)
        names = []
        for r in ok:
            for p in r["procs"]:
                if p not in names:
                    names.append(p)
        s["rss"] = {p: max((r["procs"][p][0] for r in ok if p in r["procs"] and r["procs"][p][0] is not None), default=None) for p in names}
        s["pcpu"] = {p: med(r["procs"][p][1] for r in ok if p in r["procs"]) for p in names}
    return s


def fmt_rss(s):
    parts = [f"{p.replace('ferry-', '')} {v:.1f}" for p, v in s.get("rss", {}).items() if v is not None and p not in ("submit",)]
    return " · ".join(parts)


def fmt_job(s):
    return "" if s.get("job") is None else f"{s['job']:.2f}"


def check_col(c, s):
    checks = sorted(set(r["check"] for r in c["runs"] if r["check"]))
    txt = ", ".join(checks)
    if s["nfail"]:
        txt = f"**FAILED {s['nfail']}/{s['n']}**: {txt}"
    return txt


def main_table(configs, names, base):
    out = ["| config | runs ok | median s | all runs s | rows/s | time vs pipe | Ferry job s | tool CPU s | postgres CPU s | other CPU s | peak RSS MiB per Ferry process | check |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        c, s = configs[n], stats(configs[n])
        allr = " / ".join(("FAILED" if not r["ok"] else f"{r['wall']:.2f}") for r in c["runs"])
        if not s["ok"]:
            out.append(f"| {c['label']} | 0/{s['n']} | FAILED | {allr} | | | | | | | | {check_col(c, s)} |")
            continue
        ratio = f"{s['wall'] / base:.2f}x" if base else "n/a"
        out.append(f"| {c['label']} | {len(s['ok'])}/{s['n']} | {s['wall']:.2f} | {allr} | {s['rps']:,.0f} | {ratio} | {fmt_job(s)} | "
                   f"{s['tool']:.1f} | {s['pg']:.1f} | {s['other']:.1f} | {fmt_rss(s)} | {check_col(c, s)} |")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--configs", required=True)
    ap.add_argument("--header", required=True)
    ap.add_argument("--failures", default="")
    ap.add_argument("--logs", default="")
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--dist-concurrency", type=int, required=True)
    ap.add_argument("--dist-workers", type=int, required=True)
    args = ap.parse_args()
    configs, order = load(args)
    S = {n: stats(configs[n]) for n in order}

    def wall(n):
        return S[n]["wall"] if n in S and S[n]["ok"] else None

    lines = ["# Ferry benchmark: Ferry beside the peers", ""]
    lines += open(args.header).read().rstrip().splitlines()
    lines += ["", f"Every config runs once per round, round-robin, {args.rounds} round(s); medians over the runs that passed their check. "
              "Before every run the target table is TRUNCATEd (recreated if a tool dropped it or its PK), Ferry's `ferry` ledger schema is dropped, and the cluster is CHECKPOINTed. "
              "Round 1 of every config is checked with a full-table hash (`count(*)` and `sum(hashtext(t::text)::bigint)` equal to the source), later rounds by `count(*)`; "
              "every run also checks that the target PK exists. A failed run is shown as FAILED and its time is not counted.", ""]
    lines += ["Columns: *time vs pipe* = median time / median time of the single binary `psql | psql` COPY pipe on the same table (higher is slower). "
              "*tool CPU* = user+sys of the tool's processes (`/usr/bin/time`; for Ferry distributed: coordinator + workers + `ferry submit`, plus etcd's CPU during the job when etcd is used). "
              "*postgres CPU* = CPU delta of this cluster's postmaster tree. *other CPU* = machine busy CPU (`/proc/stat`) minus both: "
              "CPU used by anything else on the machine during the run (noise; it should be near 0). "
              "*Ferry job s* = median time from the coordinator's `job submitted` to its `Parallel processing complete` log line (the rest of the wall time is process start, connection, and noticing the end). "
              "*peak RSS* = `/usr/bin/time %M` of each Ferry process, max over the passing runs (`ferry-local` is the single `ferry local` process, coordinator and workers in one; "
              f"distributed: `coord`, `w1`…`w{args.dist_workers}`). Distributed wall time is `ferry submit --watch` of a job, with coordinator and workers already up and connected "
              f"({args.dist_workers} `ferry worker` processes, `--concurrency {args.dist_concurrency}` each, `--max-workers {args.dist_workers * args.dist_concurrency}`); "
              "`ferry local` wall time is the whole process, start to exit.", ""]

    narrow = [n for n in order if configs[n]["group"] == "narrow"]
    wide = [n for n in order if configs[n]["group"] == "wide"]
    mem = [n for n in order if configs[n]["group"] == "mem"]
    keyless = [n for n in order if configs[n]["group"] == "keyless"]
    if narrow:
        rows = configs[narrow[0]]["rows"]
        lines += [f"## Narrow rows: `items`, {rows:,} rows", ""] + main_table(configs, narrow, wall("pipe")) + [""]
    if wide:
        rows = configs[wide[0]]["rows"]
        lines += [f"## Wide rows: `wide`, {rows:,} rows of 2 KB text", ""] + main_table(configs, wide, wall("wide-pipe")) + [""]
    if keyless:
        rows = configs[keyless[0]]["rows"]
        lines += [f"## Keyless table: `heap`, the {rows:,} `items` rows without a primary key (Ferry: ctid block ranges; goals: "
                  "2 workers >= 0.9x Ferry's rows/s on `items` with its key, >= 1.0x two psql pipes over ctid halves)", ""]
        lines += main_table(configs, keyless, wall("keyless-pipe2")) + [""]
    if mem:
        lines += [f"## Memory: `--chunk-size 1000000` (goal: worker peak RSS at most {GOAL_RSS_MIB} MiB)", "",
                  "| config | table | rows | chunks of 1,000,000 rows | runs ok | median s | rows/s | peak RSS MiB per Ferry process | worker peak MiB | goal | check |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for n in mem:
            c, s = configs[n], S[n]
            nchunks = -(-c["rows"] // 1_000_000)
            if not s["ok"]:
                lines.append(f"| {c['label']} | {c['table']} | {c['rows']:,} | {nchunks} | 0/{s['n']} | FAILED | | | | | {check_col(c, s)} |")
                continue
            wk = [v for p, v in s["rss"].items() if p not in ("coord", "submit", "etcd") and v is not None]
            wmax = max(wk) if wk else None
            goal = "n/a" if wmax is None else ("met" if wmax <= GOAL_RSS_MIB else f"**missed** (+{wmax - GOAL_RSS_MIB:.0f} MiB)")
            lines.append(f"| {c['label']} | {c['table']} | {c['rows']:,} | {nchunks} | {len(s['ok'])}/{s['n']} | {s['wall']:.2f} | {s['rps']:,.0f} | "
                         f"{fmt_rss(s)} | {'' if wmax is None else f'{wmax:.1f}'} | {goal} | {check_col(c, s)} |")
        lines += ["", "In `ferry local` the worker is not a separate process: its RSS is that of the whole process (coordinator, workers and client).", ""]

    if args.logs:
        lines += time_table(configs, S, order, args.logs)
    lines += ["## What the numbers say", ""] + findings(configs, S, order, args) + [""]
    profile = os.path.join(os.path.dirname(os.path.abspath(__file__)), "PROFILE.md")
    if os.path.exists(profile):
        # hand-written: what the profiles showed and what was changed (issue 4, part 3)
        lines += open(profile).read().rstrip().splitlines() + [""]
    if args.failures and os.path.exists(args.failures):
        lines += ["## Failed runs: commands and errors", ""] + open(args.failures).read().rstrip().splitlines() + [""]
    print("\n".join(lines))


def time_table(configs, S, order, logs):
    rows = []
    for n in order:
        if not any(r["procs"] for r in S[n]["ok"]):
            continue
        bs = [b for b in (breakdown(logs, n, r["round"]) for r in S[n]["ok"]) if b]
        if not bs:
            continue
        S[n]["bd"] = bs

        def m(k, fmt):
            v = [b[k] for b in bs if b.get(k) is not None]
            return fmt.format(med(v)) if v else ""
        rows.append(f"| {n} | {S[n]['wall']:.2f} | {m('plan', '{:.2f}')} | {m('copy', '{:.2f}')} | {m('chunks', '{:.0f}')} | "
                    f"{m('chunk_ms', '{:.0f}')} | {m('gap_ms', '{:.1f}')} | {m('idle', '{:.2f}')} |")
    if not rows:
        return []
    return ["## Where Ferry's time goes (from its logs; medians over the passing runs)", "",
            "*planning* = coordinator log `job submitted` -> `job planned`; *copy phase* = `job planned` -> `Parallel processing complete`. "
            "The last three columns need the workers' `chunk committed … secs=` lines, which only the distributed workers log (`ferry local` logs its workers at warn): "
            "*chunk ms* = median `secs` of a chunk (copy::process, start to commit); *gap ms* = median time between a worker's commit of one chunk and the start of its next "
            "(report completion, lease the next chunk); *idle s* = those gaps summed, per worker.", "",
            "| config | wall s | planning s | copy phase s | chunks | chunk ms | gap ms | idle s per worker |",
            "|---|---|---|---|---|---|---|---|"] + rows + [""]


def findings(configs, S, order, args):
    f = []

    def ok(n):
        return n in S and bool(S[n]["ok"])

    def rps(n):
        return S[n]["rps"]

    def x(a, b):
        return rps(a) / rps(b)

    if ok("pipe"):
        f.append(f"- The single binary COPY pipe moved {rps('pipe'):,.0f} rows/s ({S['pipe']['wall']:.2f} s) with {S['pipe']['tool']:.1f} s of psql CPU "
                 f"and {S['pipe']['pg']:.1f} s of postgres CPU.")
        loc = [(n, int(n[5:])) for n in ("local1", "local2", "local4") if ok(n)]
        if loc:
            parts = ", ".join(f"{w} worker{'s' if w > 1 else ''}: {rps(n):,.0f} rows/s = {x(n, 'pipe'):.2f}x the pipe's rows/s "
                              f"(tool CPU {S[n]['tool']:.1f} s, postgres CPU {S[n]['pg']:.1f} s)" for n, w in loc)
            f.append(f"- `ferry local`: {parts}.")
        def verdict(n, goal):
            r = x(n, "pipe")
            return f"{'**met**' if r >= goal else f'**missed** by {(goal - r) / goal * 100:.0f}%'} ({r:.2f}x)"

        modes = (("append into the indexed table, as the pipe does", ""),
                 ("`--mode replace`: load without indexes, build the PK, swap, as pgcopydb clone and the PK-dropped pipe do", "-replace"))
        for base, goal, what in (("local2", 1.0, "`ferry local --workers 2` >= 1.00x"), ("dist", 0.95, "Ferry distributed >= 0.95x")):
            parts = [f"{m}: {verdict(base + sfx, goal)}" for m, sfx in modes if ok(base + sfx)]
            if parts:
                f.append(f"- Goal {what} the pipe's rows/s: " + "; ".join(parts) + ".")
        if ok("pipe-nopk"):
            f.append(f"- The pipe with the PK dropped before and re-added after: {x('pipe-nopk', 'pipe'):.2f}x the pipe's rows/s "
                     f"(the ceiling for loading this table on this machine).")
        if ok("dist"):
            f.append("- Ferry distributed, CPU by process (median s): " + ", ".join(f"{p} {v:.2f}" for p, v in S['dist']['pcpu'].items()) + ".")
    for tls, plain in (("tls-local2", "local2"), ("tls-dist", "dist")):
        if ok(tls) and ok(plain):
            r = x(tls, plain)
            f.append(f"- PostgreSQL over TLS (verify-full, source and target), {configs[plain]['label']}: {rps(tls):,.0f} rows/s against "
                     f"{rps(plain):,.0f} in plaintext, {r:.2f}x (goal 0.90x: {'met' if r >= 0.9 else 'missed'}).")
    ov = [f"{n} {S[n]['wall'] - S[n]['job']:.2f} s of {S[n]['wall']:.2f} s" for n in order if configs[n]["group"] != "mem" and n in S and "pipe" not in n
          if ok(n) and S[n].get("job") is not None]
    if ov:
        f.append("- Ferry wall time outside the job itself (start, connect, submit, noticing the end; wall minus *Ferry job s*): " + ", ".join(ov) + ".")
    for ferry_cfg in ("local2", "dist", "local2-replace", "dist-replace"):
        if not ok(ferry_cfg):
            continue
        parts = []
        if ok("pgcopydb-clone"):
            r = x(ferry_cfg, "pgcopydb-clone")
            parts.append(f"{r:.2f}x pgcopydb clone (goal 1.2x: {'met' if r >= 1.2 else 'missed'})")
        if ok("pgcopydb"):
            parts.append(f"{x(ferry_cfg, 'pgcopydb'):.2f}x pgcopydb copy table-data")
        if ok("sling"):
            r = x(ferry_cfg, "sling")
            parts.append(f"{r:.2f}x Sling (goal 4x: {'met' if r >= 4 else 'missed'})")
        if parts:
            f.append(f"- {configs[ferry_cfg]['label']} in rows/s: " + "; ".join(parts) + ".")
    busy = [f"{n} {100 * med(r['busy'] / (r['wall'] * (os.cpu_count() or 1)) for r in S[n]['ok']):.0f}%"
            for n in order if ok(n) and configs[n]["group"] != "mem"]
    if busy:
        f.append(f"- Cores busy (machine busy CPU / (wall x {os.cpu_count()} cores), median; includes other processes' noise): " + ", ".join(busy) + ".")
    if ok("pipe") and ok("local2") and ok("local1"):
        f.append(f"- More Ferry workers on these 2 cores: postgres CPU goes {S['local1']['pg']:.1f} -> {S['local2']['pg']:.1f}"
                 + (f" -> {S['local4']['pg']:.1f}" if ok("local4") else "") + f" s (pipe: {S['pipe']['pg']:.1f} s) and wall time "
                 f"{S['local1']['wall']:.2f} -> {S['local2']['wall']:.2f}" + (f" -> {S['local4']['wall']:.2f}" if ok("local4") else "") + " s.")
    if ok("wide-pipe"):
        parts = [f"{configs[n]['label']} {x(n, 'wide-pipe'):.2f}x" for n in ("wide-local2", "wide-dist", "wide-local2-replace") if ok(n)]
        f.append(f"- Wide rows: the pipe moved {rps('wide-pipe'):,.0f} rows/s; relative rows/s: " + (", ".join(parts) or "no Ferry run passed") + ".")
    mem = [n for n in order if configs[n]["group"] == "mem" and ok(n)]
    if mem:
        parts = []
        for n in mem:
            wk = {p: v for p, v in S[n]["rss"].items() if p not in ("coord", "submit", "etcd") and v is not None}
            if wk:
                parts.append(f"{configs[n]['label']} on `{configs[n]['table']}`: {max(wk.values()):.1f} MiB")
        f.append(f"- Worker peak RSS with 1,000,000-row chunks (goal <= {GOAL_RSS_MIB} MiB): " + "; ".join(parts) + ".")
        base = {"mem-local": "local2", "mem-dist": "dist", "mem-local-wide": "wide-local2", "mem-dist-wide": "wide-dist"}
        grow = []
        for n in mem:
            b = base[n]
            if ok(b):
                wm = max((v for p, v in S[n]["rss"].items() if p not in ("coord", "submit", "etcd") and v is not None), default=None)
                wb = max((v for p, v in S[b]["rss"].items() if p not in ("coord", "submit", "etcd") and v is not None), default=None)
                if wm and wb:
                    grow.append(f"{configs[n]['table']} {'local' if 'local' in n else 'distributed'} {wb:.1f} -> {wm:.1f} MiB")
        if grow:
            f.append("- Default chunk size -> 1,000,000-row chunks, worker peak RSS: " + "; ".join(grow) + ".")
    cs = [f"{configs[a]['label']} on `{configs[a]['table']}`: {S[a]['wall']:.2f} s -> {S[b]['wall']:.2f} s ({S[a]['wall'] / S['pipe' if configs[a]['table'] == 'items' else 'wide-pipe']['wall']:.2f}x -> "
          f"{S[b]['wall'] / S['pipe' if configs[a]['table'] == 'items' else 'wide-pipe']['wall']:.2f}x the pipe's time)"
          for a, b in (("local2", "mem-local"), ("dist", "mem-dist"), ("wide-local2", "mem-local-wide"), ("wide-dist", "mem-dist-wide"))
          if ok(a) and ok(b) and ok("pipe" if configs[a]["table"] == "items" else "wide-pipe")]
    if cs:
        f.append("- Default chunk size -> `--chunk-size 1000000`, wall time: " + "; ".join(cs) + ".")
    bd = S.get("dist", {}).get("bd")
    if bd and all("idle" in b for b in bd):
        idle = med(b["idle"] for b in bd)
        f.append(f"- Distributed, narrow table: each worker sat {idle:.2f} s of the {med(b['copy'] for b in bd):.2f} s copy phase between chunks "
                 f"(median gap {med(b['gap_ms'] for b in bd):.1f} ms per chunk, {med(b['chunk_ms'] for b in bd):.0f} ms per chunk copy), "
                 f"and planning took {med(b['plan'] for b in bd):.2f} s.")
    fails = [(n, r) for n in order for r in configs[n]["runs"] if not r["ok"]]
    if fails:
        f.append("- Failed runs: " + "; ".join(f"{configs[n]['label']} round {r['round']} ({r['check']})" for n, r in fails) + ".")
    others = [r["other"] for n in order for r in configs[n]["runs"] if r["ok"]]
    if others:
        noisy = [(n, r) for n in order for r in configs[n]["runs"] if r["ok"] and r["other"] > max(0.5, 0.15 * r["wall"])]
        f.append(f"- Noise: other processes used a median of {med(others):.2f} CPU s per run"
                 + (f"; {len(noisy)} run(s) had more than max(0.5 s, 15% of the wall time) of it: "
                    + ", ".join(f"{n} r{r['round']} ({r['other']:.1f} s)" for n, r in noisy) if noisy else "") + ".")
        def quiet(n):
            ws = [r["wall"] for r in configs[n]["runs"] if r["ok"] and r["other"] <= max(0.5, 0.15 * r["wall"])]
            return (med(ws), len(ws)) if ws else (None, 0)
        if noisy:
            q = []
            for n in order:
                base = "pipe" if configs[n]["table"] == "items" else "wide-pipe"
                if configs[n]["group"] == "mem" or n == base or base not in configs:
                    continue
                (qn, cn), (qb, _) = quiet(n), quiet(base)
                if qn and qb:
                    q.append(f"{n} {qb / qn:.2f}x ({cn} run{'s' if cn > 1 else ''})")
            if q and "pipe" in configs and quiet("pipe")[0]:
                f.append(f"- The same over the quiet runs only (other CPU <= max(0.5 s, 15% of wall)), rows/s relative to the pipe "
                         f"(pipe {quiet('pipe')[0]:.2f} s" + (f", wide pipe {quiet('wide-pipe')[0]:.2f} s" if quiet("wide-pipe")[0] else "") + "): " + ", ".join(q) + ".")
        spread = []
        for n in order:
            ws = [r["wall"] for r in configs[n]["runs"] if r["ok"]]
            if len(ws) >= 2 and (max(ws) - min(ws)) / med(ws) > 0.10:
                spread.append(f"{n} {min(ws):.2f}-{max(ws):.2f} s")
        if spread:
            f.append("- Runs spread by more than 10% of the median: " + ", ".join(spread) + ".")
    av = [(n, r) for n in order for r in configs[n]["runs"] if r["av"] not in ("", "0")]
    if av:
        f.append("- Autovacuum/autoanalyze jobs on src/dst during runs: " + ", ".join(f"{n} r{r['round']} ({r['av']})" for n, r in av) + ".")
    return f


if __name__ == "__main__":
    main()
