"""The table `python -m bench` prints (Markdown, so it can go into bench/RESULTS.md and the README as is)."""

from __future__ import annotations

from typing import Any

__all__ = ["table"]

HEADER = (
    "| target | CPU per token | × relay | tokens/s, 64 streams | × direct | TTFT p50 / p99, 16 streams | "
    "TTFT p50 / p99, 2 streams | 1000 streams: errors, peak RSS | idle RSS | non-stream req/s |"
)


def table(results: dict[str, Any]) -> str:
    medians: dict[str, dict[str, Any]] = results["medians"]
    direct = medians["direct"]
    relay = medians.get("relay")
    sizes = results["sizes"]
    lines = [
        f"{results['date']} · {results['machine']['cpu']} · {results['machine']['cores']} cores · "
        f"commit {results['machine']['commit']} · medians of {results['runs']} run(s)",
        "",
        HEADER.replace("1000", str(sizes["held_streams"])),
        "|" + "---|" * (HEADER.count("|") - 1),
    ]
    for name, row in medians.items():
        added = name != "direct"
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    f"{row['cpu_us_per_token']:.1f} µs" if name != "direct" else "0",
                    _ratio(row["cpu_us_per_token"], relay["cpu_us_per_token"] if relay else None, name),
                    f"{row['tokens_per_second']:,.0f}",
                    f"{row['tokens_per_second'] / direct['tokens_per_second']:.2f}x",
                    _ttft(row, direct, 16, added),
                    _ttft(row, direct, 2, added),
                    f"{row['held_errors']}, {_mb(row['held_peak_rss_mb'])}",
                    _mb(row["idle_rss_mb"]),
                    f"{row['requests_per_second']:,.0f}",
                ]
            )
            + " |"
        )
    fake = direct["fake_cpu_us_per_token"]
    lines += [
        "",
        f"TTFT columns: added to direct's ({direct['ttft_p50_ms_16']:.2f} / {direct['ttft_p99_ms_16']:.2f} ms at 16 "
        f"streams, {direct['ttft_p50_ms_2']:.2f} / {direct['ttft_p99_ms_2']:.2f} ms at 2). The fake TGI spent "
        f"{fake:.1f} µs and the load generator {direct['load_cpu_us_per_token']:.1f} µs of CPU per token "
        "(direct run).",
    ]
    return "\n".join(lines)


def _ratio(value: float | None, floor: float | None, name: str) -> str:
    if name == "direct" or value is None or not floor:
        return "-"
    return f"{value / floor:.1f}x"


def _ttft(row: dict[str, Any], direct: dict[str, Any], streams: int, added: bool) -> str:
    p50, p99 = row[f"ttft_p50_ms_{streams}"], row[f"ttft_p99_ms_{streams}"]
    if p50 is None or p99 is None:
        return "-"
    if not added:
        return f"{p50:.2f} / {p99:.2f} ms"
    return f"+{p50 - direct[f'ttft_p50_ms_{streams}']:.2f} / +{p99 - direct[f'ttft_p99_ms_{streams}']:.2f} ms"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"
