"""Locust scenarios: one user class per use of the service, plus a Prometheus scraper.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000
    DLWP_LOCUST_WEIGHTS="sentiment=3,topics=1,digits_json=2,digits_png=1,housing=2" locust …

`make loadtest` runs it headless for a bounded time and fails on any error response.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from locust import FastHttpUser, between, constant, task

from loadtests import payloads

DEFAULT_WEIGHTS = {"sentiment": 3, "topics": 2, "digits_json": 2, "digits_png": 1, "housing": 2}


def weight(name: str) -> int:
    """A user class's weight, from DLWP_LOCUST_WEIGHTS ("name=weight,…") or the default."""
    configured = dict(
        item.split("=", 1)
        for item in os.environ.get("DLWP_LOCUST_WEIGHTS", "").split(",")
        if "=" in item
    )
    return int(configured.get(name, DEFAULT_WEIGHTS[name]))


_counter = itertools.count()


class _TaskUser(FastHttpUser):
    abstract = True
    wait_time = between(0.0, 0.05)

    def post(self, path: str, name: str, **request: Any) -> None:
        """POST and count anything but 200 as a failure, with the server's error message."""
        with self.client.post(path, name=name, catch_response=True, **request) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    def post_json(self, path: str, body: object, name: str) -> None:
        self.post(path, name, json=body)


class SentimentUser(_TaskUser):
    weight = weight("sentiment")

    @task
    def review(self) -> None:
        self.post_json("/v1/sentiment", payloads.sentiment_body(next(_counter)), "sentiment")


class TopicsUser(_TaskUser):
    weight = weight("topics")

    @task
    def wire(self) -> None:
        self.post_json("/v1/topics", payloads.topics_body(next(_counter)), "topics")


class DigitsJsonUser(_TaskUser):
    weight = weight("digits_json")

    @task
    def pixels(self) -> None:
        self.post_json("/v1/digits", payloads.digits_json_body(next(_counter)), "digits json")

    @task
    def tf_serving(self) -> None:
        self.post_json("/v1/models/mnist:predict", payloads.mnist_instances_body(next(_counter)),
                       "mnist :predict")  # fmt: skip


class DigitsPngUser(_TaskUser):
    weight = weight("digits_png")

    @task
    def png(self) -> None:
        self.post("/v1/digits", "digits png", data=payloads.digits_png_body(next(_counter)),
                  headers={"content-type": "image/png"})  # fmt: skip


class HousingUser(_TaskUser):
    weight = weight("housing")

    @task
    def house(self) -> None:
        self.post_json("/v1/housing", payloads.housing_body(next(_counter)), "housing")


class PrometheusScraper(FastHttpUser):
    """Scrapes /metrics every 15 s, as a Prometheus server would."""

    fixed_count = 1
    wait_time = constant(15)

    @task
    def scrape(self) -> None:
        with self.client.get("/metrics", name="metrics", catch_response=True) as response:
            if response.status_code != 200 or "dlwp_requests_total" not in response.text:
                response.failure("metrics scrape failed")
