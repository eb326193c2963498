"""What the monitoring costs and what healthy signals look like.

`compare` (run by `make bench`): servers with the per-model signals on, off, and on with the
JSON access log, measured interleaved at c=64 on MNIST and sentiment, as bench.py does for
batching. `baselines`: the signals' healthy ranges, measured on the test sets through the
served preprocessing and the committed models (the figures in README "Monitoring" and the
thresholds in deploy/prometheus/alerts.yml).

    python loadtests/bench_signals.py              # the comparison alone
    python loadtests/bench_signals.py --baselines  # healthy ranges as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtests.harness import Point, Server, measure, median_point, scenarios, wrk_script  # noqa: E402

# name → environment; bench.py's servers already run with signals on (the default).
SERVERS = {
    "signals-on": {},
    "signals-off": {"DLWP_SIGNALS": "false"},
    "access-log": {"DLWP_ACCESS_LOG": "true"},
}
SCENARIOS = ("mnist", "sentiment")
CONCURRENCY = 64


@dataclass
class CostPoint(Point):
    # Server CPU time per request served (warm-up included): on a busy machine it moves far
    # less than req/s, which follows whatever else the cores are doing.
    cpu_us_per_request: float = 0.0


def compare(
    scratch: Path, seconds: int, rounds: int, names: Sequence[str] = tuple(SERVERS)
) -> list[CostPoint]:
    """Each server in turn at each point, the first rotating per round; medians kept."""
    points: list[CostPoint] = []
    servers: list[Server] = []
    try:
        for name in names:
            servers.append(Server(name, SERVERS[name], scratch))
        known = scenarios()
        for scenario in (known[name] for name in SCENARIOS):
            script = wrk_script(scenario, scratch)
            runs: dict[str, list[Point]] = {server.name: [] for server in servers}
            cpu: dict[str, list[float]] = {server.name: [] for server in servers}
            for round_ in range(rounds):
                start = round_ % len(servers)
                for server in servers[start:] + servers[:start]:
                    before = _cpu_and_requests(server)
                    runs[server.name].append(
                        measure(server, scenario, CONCURRENCY, seconds, script)
                    )
                    after = _cpu_and_requests(server)
                    cpu[server.name].append((after[0] - before[0]) / (after[1] - before[1]) * 1e6)
            for server in servers:
                cpu_us = round(statistics.median(cpu[server.name]), 1)
                point = CostPoint(
                    **asdict(median_point(runs[server.name])), cpu_us_per_request=cpu_us
                )
                print(json.dumps(asdict(point)), flush=True)
                points.append(point)
    finally:
        for server in servers:
            server.stop()
    return points


def _cpu_and_requests(server: Server) -> tuple[float, float]:
    """The server process's CPU seconds so far, and the requests it has answered."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    answered = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "dlwp_requests_total"
    )
    # /proc/<pid>/stat: utime and stime, in clock ticks, are fields 14 and 15.
    ticks = 0
    for pid in server.pids():  # the supervisor and its worker
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK"), answered


def markdown(points: list[CostPoint]) -> str:
    """Each server's req/s, p99 and CPU per request against signals off."""
    off = {p.scenario: p for p in points if p.server == "signals-off"}
    lines = [
        "",
        f"Monitoring cost (c={CONCURRENCY}; ratios to the server with signals off):",
        "",
        "| server | scenario | req/s | p50 ms | p99 ms | errors | CPU µs/request | "
        "req/s ÷ off | p99 ÷ off | CPU/request ÷ off |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        base = off.get(p.scenario)
        rate = f"{p.requests_per_s / base.requests_per_s:.3f}" if base else ""
        p99 = f"{p.p99_ms / base.p99_ms:.2f}" if base and base.p99_ms else ""
        cost = f"{p.cpu_us_per_request / base.cpu_us_per_request:.3f}" if base else ""
        lines.append(
            f"| {p.server} | {p.scenario} | {p.requests_per_s:.0f} | {p.p50_ms:.2f} | "
            f"{p.p99_ms:.2f} | {p.errors} | {p.cpu_us_per_request:.0f} | {rate} | {p99} | {cost} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- healthy ranges

_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _summary(values: np.ndarray) -> dict[str, float]:
    quantiles = np.quantile(values, _QUANTILES)
    return {
        "mean": round(float(values.mean()), 4),
        **{
            f"p{round(q * 100)}": round(float(v), 4)
            for q, v in zip(_QUANTILES, quantiles, strict=True)
        },
        "min": round(float(values.min()), 4),
        "max": round(float(values.max()), 4),
    }


def _share_below(values: np.ndarray, levels: tuple[float, ...]) -> dict[str, float]:
    return {f"<{level}": round(float((values < level).mean()), 4) for level in levels}


def baselines(models_dir: Path = REPO / "models") -> dict[str, Any]:
    """Every signal on the test sets, as the server computes it (codec, model, signals code)."""
    from loadtests import payloads
    from service.model import artifacts, codecs, preprocessing
    from service.model.runtime import compile_model, configure_threads
    from service.observability import signals
    from training.datasets import load_dataset

    configure_threads(1)
    limits = codecs.Limits(max_items=10**6, max_text_chars=10**7, max_image_pixels=10**7)

    def load(name: str) -> tuple[codecs.Codec, Any]:
        folder = artifacts.version_dir(
            models_dir, name, artifacts.list_versions(models_dir, name)[-1]
        )
        manifest = artifacts.read_manifest(folder)
        codec = codecs.build_codec(folder, manifest, limits)
        predict = compile_model(folder / artifacts.MODEL_FILE, codec.input_size, 256, "tensorflow")
        return codec, predict

    def run(predict: Any, rows: np.ndarray) -> np.ndarray:
        return np.concatenate([predict(rows[i : i + 256]) for i in range(0, len(rows), 256)])

    report: dict[str, Any] = {}
    for name, texts in (("imdb", payloads.reviews(25_000)), ("reuters", payloads.wires(10_000))):
        codec, predict = load(name)
        assert isinstance(codec, codecs.TextCodec)
        encoded = codec.encode_texts(texts)
        rows, ratios = encoded.rows, encoded.oov_ratios
        assert ratios is not None
        top, confidence = signals.top_class(run(predict, rows), sigmoid=name == "imdb")
        labels = codec.labels or []
        mix = np.bincount(top, minlength=len(labels)) / len(top)
        report[name] = {
            "texts": len(texts),
            "oov_ratio": _summary(ratios),
            "oov_ratio_pooled": round(_pooled_oov(texts, codec), 4),
            "confidence": _summary(confidence),
            "confidence_share": _share_below(confidence, (0.6, 0.8, 0.9)),
            "top_label_share": {labels[i]: round(float(mix[i]), 4) for i in np.argsort(-mix)[:3]},
        }
    codec, predict = load("mnist")
    with np.load(payloads.data_dir() / "mnist.npz") as data:
        rows = preprocessing.pixel_batch_to_rows(data["x_test"])
    top, confidence = signals.top_class(run(predict, rows), sigmoid=False)
    mix = np.bincount(top, minlength=10) / len(top)
    report["mnist"] = {
        "images": len(rows),
        "ink_ratio": _summary(signals.ink_ratios(rows)),
        "confidence": _summary(confidence),
        "confidence_share": _share_below(confidence, (0.6, 0.8, 0.9)),
        "top_label_share": round(float(mix.max()), 4),
    }
    codec, predict = load("housing")
    assert isinstance(codec, codecs.HousingCodec)
    dataset = load_dataset("housing", payloads.data_dir())
    rows = preprocessing.standardize(dataset.x_test, codec.mean, codec.std)
    training_range = signals.TrainingRange.of(codec)
    assert training_range is not None, "the housing manifest has no training_range"
    outside = training_range.outside(rows)
    counts = np.bincount(
        signals.price_bands(run(predict, rows)), minlength=len(signals.PRICE_BANDS)
    )
    bands = counts / len(rows)
    report["housing"] = {
        "houses": len(dataset.x_test),
        "out_of_range_values_per_house": round(float(outside.sum() / len(outside)), 4),
        "houses_with_any_out_of_range": round(float(outside.any(axis=1).mean()), 4),
        "out_of_range_by_feature": {
            feature: int(count)
            for feature, count in zip(codec.feature_names, outside.sum(axis=0), strict=True)
            if count
        },
        "price_band_share": {
            band: round(float(s), 4) for band, s in zip(signals.PRICE_BANDS, bands, strict=True)
        },
    }
    return report


def _pooled_oov(texts: list[str], codec: Any) -> float:
    """All the texts' OOV words over all their words (the rate-of-sums a dashboard shows)."""
    from service.model import preprocessing

    sequences = preprocessing.texts_to_sequences(texts, codec.vocabulary)
    return sum(s.count(preprocessing.OOV_INDEX) for s in sequences) / sum(
        len(s) - 1 for s in sequences
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", action="store_true", help="healthy ranges, as JSON")
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"of {', '.join(SERVERS)}")
    args = parser.parse_args(argv)
    if args.baselines:
        print(json.dumps(baselines(), indent=2))
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="dlwp-bench-"))
    print(markdown(compare(scratch, args.seconds, args.rounds, args.servers.split(","))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
