"""Live traffic for a rollout demo: real IMDB test reviews to a running server, then their true
labels sent back through `POST /v1/feedback` for a share of them (docs/rollouts.md).

    python tools/rollout_traffic.py --url http://127.0.0.1:8000 --requests 400 --label 0.5
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import json
import random
from pathlib import Path

import httpx

from loadtests.payloads import data_dir


def test_reviews(limit: int, seed: int) -> list[tuple[str, str]]:
    """(text, "positive"|"negative") pairs from the IMDB test set, shuffled."""
    with gzip.open(Path(data_dir()) / "imdb_raw_test.jsonl.gz", "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    random.Random(seed).shuffle(records)
    return [(r["text"], "positive" if r["label"] else "negative") for r in records[:limit]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--label", type=float, default=0.5, help="share of answers labelled")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reviews = test_reviews(args.requests, args.seed)

    def ask(index: int) -> tuple[int, object]:
        text, _ = reviews[index]
        answer = httpx.post(f"{args.url}/v1/sentiment", json={"text": text}, timeout=30,
                            headers={"X-Request-ID": f"demo-{args.seed}-{index}"})  # fmt: skip
        return answer.status_code, answer.json().get("version")

    with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
        answers = list(pool.map(ask, range(len(reviews))))
    codes = sorted({code for code, _ in answers})
    versions = {str(v): sum(1 for _, x in answers if x == v) for v in {x for _, x in answers}}
    print(f"{len(answers)} requests: status codes {codes}, answered by versions {versions}")
    labelled = 0
    for index, (_, truth) in enumerate(reviews[: int(len(reviews) * args.label)]):
        body = {"request_id": f"demo-{args.seed}-{index}", "label": truth}
        labelled += httpx.post(f"{args.url}/v1/feedback", json=body, timeout=30).status_code == 200
    print(f"{labelled} answers labelled with their true sentiment")


if __name__ == "__main__":
    main()
