"""Plots of the end-to-end benchmark (run by scripts/bench with the matplotlib of its own venv).

    python bench-plots.py target/bench/results.json docs/bench
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter  # noqa: E402

COLORS = {"direct": "#4c72b0", "plain": "#55a868", "gate": "#dd8452", "gate_limits": "#937860",
          "gate_metrics": "#8172b2", "gate_audit": "#c44e52"}
LABELS = {"direct": "direct", "plain": "plain", "gate": "gate", "gate_limits": "gate + limits",
          "gate_metrics": "gate + metrics", "gate_audit": "gate + audit"}


def modes_of(R):
    return R.get("modes") or list(COLORS)


def pick(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def nines(q):
    """A percentile as 'number of nines': 90 -> 1, 99 -> 2, 99.9 -> 3."""
    import math

    return -math.log10(max(1e-9, 1 - q / 100))


def latency(R, out):
    rows = R["rw"]
    conns = sorted({r["connections"] for r in rows})
    lone = R.get("lone") or []
    panels = ([("1 connection, 1 in flight", lone)] if lone else []) + [
        (f"{c} connection{'s' if c > 1 else ''} x {R['meta']['depth']} in flight",
         [r for r in rows if r["connections"] == c]) for c in conns]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    ticks = [0, 50, 90, 99, 99.9, 99.99]
    for ax, (title, rs) in zip(axes[0], panels):
        for mode in modes_of(R):
            r = pick(rs, mode=mode)
            if not r or not r.get("latency_us"):
                continue
            pts = [(q, v) for q, v in r["latency_us"]["percentiles"] if q <= 99.99]
            ax.plot([nines(q) for q, _ in pts], [v for _, v in pts], label=LABELS[mode],
                    color=COLORS[mode], linewidth=1.8)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator([nines(t) for t in ticks]))
        ax.xaxis.set_major_formatter(FuncFormatter(
            lambda x, _: f"{100 * (1 - 10 ** -x):.4g}"))
        ax.set_xlabel("percentile")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("latency (µs)")
    axes[0][0].legend()
    fig.suptitle("Small prepared reads and writes: latency by percentile")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)


def throughput(R, out):
    rows = R["rw"]
    conns = sorted({r["connections"] for r in rows})
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    modes = modes_of(R)
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        xs, ys, cpu = [], [], []
        for j, c in enumerate(conns):
            r = pick(rows, mode=mode, connections=c)
            if r:
                xs.append(j + (i - (len(modes) - 1) / 2) * width)
                ys.append(r["rps"] / 1000)
                cpu.append(r.get("worker_us_per_req"))
        ax.bar(xs, ys, width, label=LABELS[mode], color=COLORS[mode])
        if mode != "direct":
            ax2.bar(xs, [c or 0 for c in cpu], width, label=LABELS[mode], color=COLORS[mode])
    for a in (ax, ax2):
        a.set_xticks(range(len(conns)))
        a.set_xticklabels([str(c) for c in conns])
        a.set_xlabel(f"connections ({R['meta']['depth']} requests in flight each)")
        a.grid(True, axis="y", alpha=0.3)
        a.legend()
    ax.set_ylabel("thousand requests/s")
    ax.set_title("Throughput")
    ax2.set_ylabel("µs of worker CPU per request")
    ax2.set_title("NGINX worker CPU per request")
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)


def buffers(R, out):
    rows = R.get("buffers") or []
    if not rows:
        return
    sizes = []
    for r in rows:
        if r["buffer"] not in sizes:
            sizes.append(r["buffer"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.38
    gate = next((r["mode"] for r in rows if r["mode"] != "plain"), "gate_audit")
    for i, mode in enumerate(["plain", gate]):
        xs = [j + (i - 0.5) * width for j in range(len(sizes))]
        rs = [pick(rows, mode=mode, buffer=b) or {} for b in sizes]
        ax.bar(xs, [r.get("mib_per_s", 0) for r in rs], width, label=LABELS[mode],
               color=COLORS[mode])
        ax2.bar(xs, [r.get("worker_us_per_mib") or 0 for r in rs], width, label=LABELS[mode],
                color=COLORS[mode])
    for a in (ax, ax2):
        a.set_xticks(range(len(sizes)))
        a.set_xticklabels(sizes)
        a.set_xlabel("proxy_buffer_size")
        a.grid(True, axis="y", alpha=0.3)
        a.legend()
    ax.set_ylabel("MiB/s of results")
    ax.set_title("Large results (1 MiB each)")
    ax2.set_ylabel("µs of worker CPU per MiB")
    ax2.set_title("NGINX worker CPU per MiB")
    fig.tight_layout()
    fig.savefig(out / "buffers.png", dpi=110)
    plt.close(fig)


def main():
    R = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    latency(R, out)
    throughput(R, out)
    buffers(R, out)
    print(f"bench: plots in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
