"""A small HTTP client for a running server, used by the `dlwp` CLI."""

from __future__ import annotations

import os
from typing import Any

import httpx


class ServerError(Exception):
    """The server could not be reached or answered with an error."""


class ServerClient:
    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 120.0) -> None:
        self.url = url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get("DLWP_API_KEY")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout_s = timeout_s

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = httpx.request(method, self.url + path, headers={**self._headers,
                                     **kwargs.pop("headers", {})}, timeout=self._timeout_s,
                                     **kwargs)  # fmt: skip
        except httpx.HTTPError as error:
            raise ServerError(f"cannot reach {self.url}: {error}") from None
        if response.status_code != 200:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise ServerError(f"{method} {path}: {response.status_code} {message}")
        return response.json()

    def metadata(self, model: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v2/models/{model}")
        return result

    def load(self, model: str) -> int:
        """Ask the server to serve the model's newest (or pinned) version; the version serving."""
        return int(self._call("POST", f"/v2/repository/models/{model}/load")["version"])

    def rollout(self, model: str, action: str = "", body: dict[str, Any] | None = None) -> Any:
        """Start (body given), read (no action), promote or abort a model's rollout."""
        path = f"/v2/repository/models/{model}/rollout" + (f"/{action}" if action else "")
        if body is not None:
            return self._call("POST", path, json=body)
        return self._call("POST" if action else "GET", path)

    def start_rollout(self, model: str, version: int, mode: str) -> str:
        """Start a rollout of a newly exported `version`; what happened, in words."""
        serving = self.metadata(model).get("versions", [None])[0]
        if serving is not None and int(serving) == version:
            raise ServerError(
                f"{model}: the server already serves version {version} (its version polling "
                "loaded it): run the server with DLWP_POLL_SECONDS=0, or pin the serving "
                "version, to roll new versions out instead"
            )
        status = self.rollout(model, body={"version": version, "mode": mode})
        return (f"{model}: {mode} rollout {status['id']} of version {version} beside "
                f"{status['serving_version']} started at {self.url}; follow it with "
                f"`dlwp rollout status {model} --url {self.url}`")  # fmt: skip

    def predict(self, task: str, **request: Any) -> Any:
        return self._call("POST", f"/v1/{task}", **request)
