"""The one module that reaches into uvicorn is pinned: an upgrade outside the tested range, or one
that moves the hooks it extends, fails here (the behaviour itself: test_overload.py)."""

from __future__ import annotations

import inspect
import logging

import pytest

from service.process import transport
from service.settings import Settings


def test_the_installed_uvicorn_is_one_the_connection_guard_was_tested_with():
    low, high = transport.SUPPORTED_UVICORN

    assert transport.supported(), (
        f"uvicorn {transport.uvicorn_version()} is outside [{low}, {high}): run tests/process "
        "with it, then move SUPPORTED_UVICORN in service/process/transport.py"
    )


def test_uvicorns_protocol_still_has_every_hook_and_attribute_the_guard_uses():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    hooks = ("connection_made", "on_message_begin", "on_headers_complete", "on_message_complete",
             "on_response_complete", "shutdown")  # fmt: skip
    parameters = inspect.signature(HttpToolsProtocol.__init__).parameters

    assert all(callable(getattr(HttpToolsProtocol, hook, None)) for hook in hooks)
    assert {"config", "server_state", "app_state"} <= set(parameters)
    source = inspect.getsource(HttpToolsProtocol)
    for attribute in ("self.connections", "self.transport", "self.loop", "self.server_state",
                      "self.app_state", "self.config"):  # fmt: skip
        assert attribute in source, f"uvicorn's protocol no longer sets {attribute}"


@pytest.mark.parametrize(("version", "expected"),
                         [((0, 54, 0), True), ((0, 54, 9), True), ((0, 53, 1), False),
                          ((0, 55, 0), False), ((1, 0, 0), False)])  # fmt: skip
def test_the_pin_is_a_range_of_releases(version, expected):
    assert transport.supported(version) is expected


def test_outside_the_range_the_server_falls_back_to_uvicorns_public_cap_and_says_so(
    monkeypatch, caplog
):
    monkeypatch.setattr(transport, "uvicorn_version", lambda: (9, 0, 0))

    with caplog.at_level(logging.WARNING):
        options = transport.uvicorn_options(Settings(max_connections=100), None)

    assert options == {"limit_concurrency": 100}
    assert "outside the versions the connection guard was tested with" in caplog.text
