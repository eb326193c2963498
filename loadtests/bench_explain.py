"""What an explanation of a typical (≈230-word) review costs the model, beside a plain prediction.

Run by `loadtests/bench.py` in a child process pinned to one core, one TensorFlow thread, as
the server runs. Reviews are real IMDB test reviews of 220–240 words when the datasets are
here (`DLWP_DATA_DIR` or ../shared/datasets), else texts of the same length drawn from the
vocabulary by word rank (Zipf), so the bench runs anywhere. Times are CPU seconds of the
process (robust on a busy machine), medians over every call.

    python -m loadtests.bench_explain --calls 50
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.servers import pinned  # noqa: E402

REVIEWS = 20
WORDS = (220, 240)


def explain_cost(quick: bool) -> dict[str, float]:
    """Measure in a pinned child process (TensorFlow stays out of the bench's own process)."""
    command = [sys.executable, "-m", "loadtests.bench_explain", "--calls", "3" if quick else "30"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OPENBLAS_NUM_THREADS": "1"}
    output = subprocess.run(pinned(command, 0), capture_output=True, text=True, check=True,
                            cwd=REPO, env=env).stdout  # fmt: skip
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def markdown(cost: dict[str, float]) -> str:
    return (
        f"\nExplanation of a ≈230-word review (imdb; {cost['reviews']:.0f} {cost['source']} "
        f"reviews, median {cost['rows']:.0f} model rows each; CPU ms, one thread):\n\n"
        "| plain prediction (1 row) | explanation: model | explanation: building rows |\n"
        "|---|---|---|\n"
        f"| {cost['plain_ms']:.2f} | {cost['explain_model_ms']:.2f} | {cost['build_ms']:.2f} |\n"
    )


def _reviews(vocabulary: dict[str, int]) -> tuple[list[str], str]:
    from service.model.preprocessing import tokenize

    for folder in (os.environ.get("DLWP_DATA_DIR"), REPO.parent / "shared" / "datasets"):
        path = Path(folder) / "imdb_raw_test.jsonl.gz" if folder else None
        if path is None or not path.is_file():
            continue
        found = []
        with gzip.open(path, "rt") as lines:
            for line in lines:
                text = json.loads(line)["text"]
                if WORDS[0] <= len(tokenize(text)) <= WORDS[1]:
                    found.append(text)
                if len(found) == REVIEWS:
                    return found, "real"
    import numpy as np

    words = sorted(vocabulary, key=vocabulary.__getitem__)
    ranks = np.random.default_rng(0).zipf(1.2, size=(REVIEWS, sum(WORDS) // 2))
    texts = [" ".join(words[min(r, len(words)) - 1] for r in row) for row in ranks]
    return texts, "synthetic"


def _measure(calls: int) -> dict[str, float | str]:
    from service.dataplane import explain
    from service.model import artifacts
    from service.model.codecs import Limits, TextCodec, build_codec
    from service.model.runtime import compile_model, configure_backend, configure_threads

    configure_threads(1)
    configure_backend("tensorflow", 1)
    folder = REPO / "models" / "imdb" / "1"
    codec = build_codec(folder, artifacts.read_manifest(folder), Limits(1024, 100_000, 784))
    if not isinstance(codec, TextCodec):
        raise SystemExit(f"{folder} is not a text model")
    predict = compile_model(folder / "model.keras", codec.input_size, 128, "tensorflow")
    texts, source = _reviews(dict(codec.vocabulary))
    plain, model, build, sizes = [], [], [], []
    for _ in range(calls):
        for text in texts:
            started = time.process_time()
            rows = explain.text_occlusion(codec, [text], 4096).rows
            build.append(time.process_time() - started)
            sizes.append(len(rows))
            started = time.process_time()
            predict(rows[:1])
            plain.append(time.process_time() - started)
            started = time.process_time()
            for i in range(0, len(rows), 128):  # as the batcher runs it: max_batch_size chunks
                predict(rows[i : i + 128])
            model.append(time.process_time() - started)
    return {
        "source": source,
        "reviews": len(texts),
        "rows": statistics.median(sizes),
        "plain_ms": statistics.median(plain) * 1000,
        "explain_model_ms": statistics.median(model) * 1000,
        "build_ms": statistics.median(build) * 1000,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="passes over the reviews")
    print(json.dumps(_measure(parser.parse_args().calls)))
