"""`make bench`: run every benchmark, write bench/results.json and bench/results.md."""
from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from bench.common import machine

MODULES = ["bench.bench_checkin", "bench.bench_nearby", "bench.bench_phash", "bench.bench_dedup",
           "bench.bench_heatmap", "bench.bench_upload"]
OUT = Path(__file__).resolve().parent


def main() -> int:
    """Run all benchmarks in this process order; a failing one is reported, the rest still run."""
    # Running a subset updates those figures and keeps the others from the last full run.
    previous = OUT / "results.json"
    results: dict[str, dict] = json.loads(previous.read_text())["results"] if previous.exists() and sys.argv[1:] else {}
    failed = []
    for name in (sys.argv[1:] or MODULES):
        started = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(name)
            results.update(module.run())
        except ModuleNotFoundError as exc:
            print(f"[bench] {name}: not present ({exc.name})", file=sys.stderr)
            continue
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"[bench] {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    doc = {"machine": machine(), "results": results}
    (OUT / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    (OUT / "results.md").write_text(markdown(doc))
    print(markdown(doc))
    return 1 if failed else 0


def markdown(doc: dict) -> str:
    """A short table of the figures with their goals."""
    lines = ["| figure | value | unit | baseline | ratio | goal | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    marks = {True: "yes", False: "**no**", None: "-"}
    for name, r in doc["results"].items():
        lines.append(f"| {name} | {r['value']} | {r['unit']} | {r.get('baseline')} | {r.get('ratio')} | "
                     f"{r.get('goal', '')} | {marks[r.get('met')]} |")
    m = doc["machine"]
    return "\n".join(lines) + f"\n\nMachine: {m['cpus']} CPUs, {m['memory_gb']} GB, {m['platform']}, Python {m['python']}\n"


if __name__ == "__main__":
    sys.exit(main())
