#!/usr/bin/env python3
"""Top functions of a Go CPU profile (pprof protobuf, as etcd's
/debug/pprof/profile returns it), without the Go toolchain.

    python3 bench/sched/pprof-top.py etcd-cpu.pprof [N] [--focus REGEX]

Prints the N functions with the most CPU time of their own (flat) and with
their callees (cumulative), as shares of the profile's CPU time. With
--focus, only samples whose stack has a function matching REGEX count.
"""
import gzip
import re
import sys
from collections import defaultdict


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def fields(b):
    """Yields (field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, t = key >> 3, key & 7
        if t == 0:
            v, i = varint(b, i)
        elif t == 1:
            v, i = b[i:i + 8], i + 8
        elif t == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif t == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {t}")
        yield f, t, v


def ints(t, v):
    """A repeated integer field, packed (wire type 2) or not."""
    if t == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = varint(v, i)
        out.append(x)
    return out


def main():
    args = [a for a in sys.argv[1:]]
    focus = None
    if "--focus" in args:
        k = args.index("--focus")
        focus = re.compile(args[k + 1])
        del args[k:k + 2]
    path = args[0]
    top = int(args[1]) if len(args) > 1 else 25
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    strings, samples, locations, functions, types = [], [], {}, {}, []
    for f, t, v in fields(raw):
        if f == 6:
            strings.append(v.decode("utf-8", "replace"))
        elif f == 1:
            types.append({ff: vv for ff, tt, vv in fields(v)})
        elif f == 2:
            locs, vals = [], []
            for ff, tt, vv in fields(v):
                if ff == 1:
                    locs += ints(tt, vv)
                elif ff == 2:
                    vals += ints(tt, vv)
            samples.append((locs, vals))
        elif f == 4:
            lid, funcs = 0, []
            for ff, tt, vv in fields(v):
                if ff == 1:
                    lid = vv
                elif ff == 4:
                    fid = dict((a, c) for a, _, c in fields(vv)).get(1, 0)
                    funcs.append(fid)
            locations[lid] = funcs
        elif f == 5:
            d = {ff: vv for ff, tt, vv in fields(v)}
            functions[d.get(1, 0)] = d.get(2, 0)
    names = [strings[i] if i < len(strings) else "?" for i in range(len(strings))]
    # value index: the "cpu" nanoseconds type when present, else the last
    vi = len(types) - 1
    for k, ty in enumerate(types):
        if names[ty.get(1, 0)] == "cpu":
            vi = k
    flat, cum = defaultdict(int), defaultdict(int)
    total = 0
    for locs, vals in samples:
        v = vals[vi] if vi < len(vals) else 0
        stack = []
        for lid in locs:  # leaf first; inlined functions listed first in a location
            for fid in locations.get(lid, []):
                stack.append(names[functions.get(fid, 0)])
        if focus and not any(focus.search(fn) for fn in stack):
            continue
        total += v
        if stack:
            flat[stack[0]] += v
        for fn in set(stack):
            cum[fn] += v
    print(f"{path}: {total / 1e9:.2f} s CPU in {len(samples)} samples"
          + (f" (focus {focus.pattern})" if focus else ""))
    for title, table in (("flat", flat), ("cumulative", cum)):
        print(f"\n{title}:")
        for fn, v in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {100 * v / max(total, 1):5.1f}%  {fn}")


if __name__ == "__main__":
    main()
