#!/usr/bin/env python3
"""Print criterion's median times per benchmark and their ratio to the `jemalloc` variant
of the same group, as a Markdown table (for BENCHMARKS.md).

usage: scripts/bench-ratios.py [TARGET_DIR]   (default: target)
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target") / "criterion"
if not root.is_dir():
    sys.exit(f"bench-ratios: no criterion results under {root}: run `cargo bench` first")

rows = []
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report"):
    medians = {}
    for variant in sorted(p for p in group.iterdir() if p.is_dir() and p.name != "report"):
        estimates = variant / "new" / "estimates.json"
        if estimates.is_file():
            medians[variant.name] = json.loads(estimates.read_text())["median"]["point_estimate"]
    base = medians.get("jemalloc")
    for name, median in medians.items():
        ratio = f"{median / base:.3f}×" if base else "n/a"
        rows.append((group.name, name, median, ratio))

print("| group | variant | median per iteration | ratio to jemalloc |")
print("|---|---|---|---|")
for group, name, median, ratio in rows:
    print(f"| {group} | {name} | {median / 1000:.1f} µs | {ratio} |")
