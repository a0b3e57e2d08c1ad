"""How cost grows: validator step time, peak memory and teacher tokens per step vs miners, and
the miner's memory and throughput vs concurrency; one table, one JSON, one PNG.

    subnet bench scaling [--miners 16,64,256,1024] [--concurrency 1,32,256,1024]
                         [--out docs/img/scaling.png] [--json PATH]

The validator side is ``subnet bench validator`` per level (simulated miners in a separate
process, hf teacher, 4 tasks x 16 tokens, spot checks off); the miner side is ``subnet bench
miner`` (zero-cost engine, streamed) per concurrency. Per level it also prints the cost per
answer (step seconds / answers) and per request (server CPU ms), whose drift with size is what
says where growth stops being linear.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neurons.owner.benchmarks import miner as miner_bench


def plot(vrows: list[dict[str, Any]], mrows: list[dict[str, Any]], out: Path) -> None:
    """Two panels, drawn on an Agg canvas (no pyplot, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2)
    miners = [r["miners"] for r in vrows]
    ax.plot(miners, [r["step_s"] for r in vrows], "o-", label="step time (s)")
    ax.plot(miners, [r["raw_s"] for r in vrows], "s--", label="teacher score alone (s)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("simulated miners (4 tasks each)")
    ax.set_ylabel("seconds per step")
    ax.set_title("Validator step (hf teacher, CPU)")
    ax2 = ax.twinx()
    ax2.plot(miners, [r["peak_rss_mb"] for r in vrows], "^:", color="tab:red", label="peak RSS")
    ax2.set_ylabel("validator peak RSS (MB)", color="tab:red")
    ax.legend(loc="upper left", fontsize=8)
    conc = [r["concurrency"] for r in mrows]
    bx.plot(conc, [r["peak_rss_mb"] for r in mrows], "^-", color="tab:red", label="peak RSS")
    bx.set_xscale("log", base=2)
    bx.set_xlabel("concurrent streamed requests")
    bx.set_ylabel("miner peak RSS (MB)", color="tab:red")
    bx.set_title("Miner HTTP layer (zero-cost engine)")
    bx2 = bx.twinx()
    bx2.plot(conc, [r["tokens_per_s"] for r in mrows], "o--", label="streamed tok/s")
    bx2.set_ylabel("streamed tokens/s (wall)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="subnet bench scaling", description=__doc__.split("\n")[0])
    p.add_argument("--miners", default="16,64,256,1024")
    p.add_argument("--concurrency", default="1,32,256,1024")
    p.add_argument("--steps", type=int, default=2, help="measured validator steps per level")
    p.add_argument("--out", default="docs/img/scaling.png")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    # The miner first, while this process holds no engine: its RSS is then the layer's own.
    margs = argparse.Namespace(
        engine="zero",
        model=None,
        concurrency=args.concurrency,
        requests_per_worker=2,
        requests_min=32,
        max_tokens=64,
        prompt_len=32,
        k=20,
        quick=True,
        compare_inline=False,
    )
    mrows = asyncio.run(miner_bench.bench(margs))
    for r in mrows:
        print(
            f"miner c={r['concurrency']:>5}: {r['tokens_per_s']:8.0f} tok/s,"
            f" {r['server_cpu_ms_per_request']:6.2f} ms CPU/request,"
            f" peak RSS {r['peak_rss_mb']:6.0f} MB",
            flush=True,
        )
    from neurons.owner.benchmarks import validator as validator_bench  # loads torch: after

    vrows = []
    for n in [int(x) for x in args.miners.split(",")]:
        r = asyncio.run(validator_bench.bench(n, 4, 16, args.steps))
        r["raw_s"] = r["answers"] / r["raw_per_s"]
        vrows.append(r)
        print(
            f"validator {n:>5} miners: step {r['step_s']:7.2f} s"
            f" ({r['step_s'] / r['answers'] * 1e3:6.2f} ms/answer), teacher alone"
            f" {r['raw_s']:6.2f} s, peak RSS {r['peak_rss_mb']:6.0f} MB,"
            f" teacher tokens/step {r['teacher_tokens']}",
            flush=True,
        )
    plot(vrows, mrows, Path(args.out))
    if args.json:
        Path(args.json).write_text(json.dumps({"validator": vrows, "miner": mrows}, indent=1))
    first, last = vrows[0], vrows[-1]
    growth = (last["step_s"] / last["answers"]) / (first["step_s"] / first["answers"])
    print(
        f"wrote {args.out}; validator cost per answer x{growth:.2f} from"
        f" {first['miners']} to {last['miners']} miners (1.00 = linear)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
