"""Turning results into the printed tables, ``latest.json`` and the PNG chart."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .decode import DecodeRow
from .manykeys import ManyKeysRow
from .retry import RetryAccuracy, SuccessPathCost
from .targets import Target
from .throughput import ThroughputRow

__all__ = ["markdown_tables", "write_chart", "write_json"]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_table(rows: Sequence[ThroughputRow]) -> str:
    body = []
    for r in rows:
        flags = []
        if r.errors:
            flags.append(f"{r.errors} errors")
        if r.capped_rounds:
            flags.append(f"time-capped in {r.capped_rounds}/{r.rps.n} rounds")
        vs = "" if r.baseline == "raw" else f"{r.vs_baseline.text('{:.2f}')}x {r.baseline}"
        body.append(
            [
                r.label,
                str(r.concurrency),
                r.rps.text(),
                r.ratio.text("{:.2f}"),
                vs,
                f"{r.client_us_per_request.median:.0f}",
                r.cpu_ratio.text("{:.2f}"),
                f"{r.client_cpu:.0%}",
                f"{r.server_cpu_max:.0%}",
                f"{r.other_cpu_max:.0%}",
                "; ".join([*([r.note] if r.note else []), *flags]),
            ]
        )
    return _table(
        [
            "client",
            "conc.",
            "req/s median (min-max)",
            "x raw aiohttp",
            "x own baseline",
            "client CPU µs/req",
            "x raw by CPU/req",
            "client CPU",
            "responder CPU (max)",
            "other procs CPU (max)",
            "notes",
        ],
        body,
    )


def decode_table(rows: Sequence[DecodeRow]) -> str:
    return _table(
        ["decoder", "µs per profile, median (best-worst)", "notes"],
        [[r.label, r.us.text("{:.2f}"), r.note] for r in rows],
    )


def many_keys_table(rows: Sequence[ManyKeysRow]) -> str:
    label = {"balances": "balances()", "profile": "profile(api_key=k), 64 workers (reference)"}
    return _table(
        [
            "path",
            "keys",
            "wall s",
            "req/s",
            "errors",
            "RSS after imports MB",
            "peak RSS MB",
            "client CPU",
            "emulator CPU",
        ],
        [
            [
                label.get(r.mode, r.mode),
                f"{r.keys:,}",
                f"{r.wall_s:.1f}",
                f"{r.rps:,.0f}",
                str(r.errors),
                f"{r.rss_start_mb:.1f}",
                f"{r.peak_rss_mb:.1f}",
                f"{r.client_cpu:.0%}",
                f"{r.server_cpu:.0%}",
            ]
            for r in rows
        ],
    )


def retry_table(rows: Sequence[RetryAccuracy], cost: Sequence[SuccessPathCost]) -> str:
    accuracy = _table(
        ["asked", "trials", "late by, mean ms", "max ms", "min ms", "early"],
        [
            [
                r.label,
                str(r.trials),
                f"{r.mean_error_ms:.1f}",
                f"{r.max_error_ms:.1f}",
                f"{r.min_error_ms:.1f}",
                str(r.early),
            ]
            for r in rows
        ],
    )
    success = _table(
        ["success path (no I/O)", "µs per call, median (min-max)"],
        [[c.label, c.us.text("{:.2f}")] for c in cost],
    )
    return accuracy + "\n\n" + success


def targets_table(rows: Sequence[Target]) -> str:
    return _table(
        ["target", "wanted", "measured", "result"],
        [[t.name, t.wanted, t.measured, f"**{t.status}**"] for t in rows],
    )


def markdown_tables(
    *,
    throughput: Sequence[ThroughputRow],
    skipped: Sequence[str],
    decode: Sequence[DecodeRow],
    many_keys: Sequence[ManyKeysRow],
    retry: Sequence[RetryAccuracy],
    success_path: Sequence[SuccessPathCost],
    targets: Sequence[Target],
    servers: dict[str, str],
) -> str:
    parts = []
    if throughput:
        parts += [f"### Throughput ({servers['throughput']})", throughput_table(throughput)]
    parts += [f"- not run: {line}" for line in skipped]
    if decode:
        parts += ["### Decoding alone (no server)", decode_table(decode)]
    if many_keys:
        parts += [f"### Many keys ({servers['many_keys']})", many_keys_table(many_keys)]
    if retry or success_path:
        parts += [f"### Retries ({servers['retry']})", retry_table(retry, success_path)]
    parts += ["### Targets", targets_table(targets)]
    return "\n\n".join(parts)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_plain(document), indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _wrap(label: str, width: int = 30) -> str:
    """A bar's label on at most two lines, split at a space near the middle."""
    if len(label) <= width or " " not in label:
        return label
    middle = len(label) // 2
    spaces = [i for i, ch in enumerate(label) if ch == " "]
    cut = min(spaces, key=lambda i: abs(i - middle))
    return label[:cut] + "\n" + label[cut + 1 :]


def chart_from_results(results: Path, path: Path) -> str:
    """Draw the chart again from a results file (``results/latest.json``), without
    running the benchmarks: for a change to the chart itself."""
    document = json.loads(results.read_text())

    def rows(key: str) -> list[Any]:
        return [
            SimpleNamespace(
                **{k: SimpleNamespace(**v) if isinstance(v, dict) else v for k, v in row.items()}
            )
            for row in document.get(key, [])
        ]

    return write_chart(path, rows("throughput"), rows("decode"))


def write_chart(
    path: Path, throughput: Sequence[ThroughputRow], decode: Sequence[DecodeRow]
) -> str:
    """Bars of median req/s (min-max whiskers) per client and concurrency, and decode µs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'accountapi[bench]'): no chart written"
    # Stacked, not side by side, with type large enough to read where the docs show the
    # chart at the width of their text column (about 800 px).
    plt.rcParams.update({"font.size": 13})
    fig, (left, right) = plt.subplots(
        2, 1, figsize=(11, 14), gridspec_kw={"height_ratios": [3, 1.5]}
    )
    concurrencies = sorted({r.concurrency for r in throughput})
    labels = list(dict.fromkeys(r.label for r in throughput))
    height = 0.8 / max(len(concurrencies), 1)
    for i, conc in enumerate(concurrencies):
        rows = {r.label: r for r in throughput if r.concurrency == conc}
        ys = [n + i * height for n in range(len(labels))]
        med = [rows[lab].rps.median if lab in rows else 0.0 for lab in labels]
        err = [
            [
                m - rows[lab].rps.low if lab in rows else 0.0
                for lab, m in zip(labels, med, strict=True)
            ],
            [
                rows[lab].rps.high - m if lab in rows else 0.0
                for lab, m in zip(labels, med, strict=True)
            ],
        ]
        left.barh(ys, med, height=height, xerr=err, capsize=3, label=f"{conc} concurrent")
    if not throughput:
        left.set_axis_off()
    left.set_yticks([n + height * (len(concurrencies) - 1) / 2 for n in range(len(labels))])
    left.set_yticklabels([_wrap(label) for label in labels])
    left.invert_yaxis()
    left.grid(axis="x", alpha=0.3)
    left.set_xlabel("requests/s, median over rounds (whiskers: min-max)")
    left.set_title("Throughput against the loopback responder", fontweight="bold")
    if throughput:
        left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=len(concurrencies))
    if decode:
        names = [_wrap(r.label) for r in decode]
        right.barh(range(len(decode)), [r.us.median for r in decode], color="tab:green")
        right.set_yticks(range(len(decode)))
        right.set_yticklabels(names)
        right.invert_yaxis()
        right.grid(axis="x", alpha=0.3)
        right.axvline(10.0, color="tab:red", linestyle="--", linewidth=1.5, label="target 10 µs")
        right.set_xlabel("µs per profile (median)")
        right.set_title("Decoding one profile body", fontweight="bold")
        right.legend(loc="lower right")
    else:
        right.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"


if __name__ == "__main__":  # python -m benchmarks.report [results.json] [chart.png]
    _results = Path(__file__).resolve().parent / "results"
    _args = sys.argv[1:]
    print(
        chart_from_results(
            Path(_args[0]) if _args else _results / "latest.json",
            Path(_args[1]) if len(_args) > 1 else _results / "throughput.png",
        )
    )
