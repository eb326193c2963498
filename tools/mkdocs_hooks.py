"""MkDocs hooks: the parts of the documentation that the code already states, rendered from it.

A page asks for a part with a marker on a line of its own, replaced at build time:

    <!-- generated: routes -->    every HTTP route, from the app's OpenAPI document
    <!-- generated: settings -->  every DLWP_* setting, from `service.settings.Settings`
    <!-- generated: metrics -->   every Prometheus metric the server exports, from its registry
    <!-- generated: layout -->    each subpackage of `service/` with its module docstring

The site also gets `openapi.json`, the document `/openapi.json` serves. Nothing here starts a
server or loads a model: the app is built and asked for its document without its lifespan.
"""

from __future__ import annotations

import html
import importlib
import json
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

MARKER = re.compile(r"^<!-- generated: (?P<part>[a-z]+) -->$", re.MULTILINE)
METHOD_ORDER = ("get", "post", "put", "delete")


def on_config(config: Any) -> Any:
    """Make the checkout's `service` importable, whatever the working directory."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def render(match: re.Match[str]) -> str:
        part = match["part"]
        if part not in PARTS:
            raise ValueError(f"{page.file.src_path}: unknown generated part {part!r}")
        return PARTS[part]()

    return MARKER.sub(render, markdown)


def on_files(files: Any, config: Any) -> Any:
    """Publish the OpenAPI document beside the pages, so they can link to it."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, "openapi.json", content=json.dumps(openapi(), indent=2)))
    return files


@cache
def openapi() -> dict[str, Any]:
    """The OpenAPI document of an app on default settings, as `GET /openapi.json` answers it."""
    from fastapi.testclient import TestClient

    from service.rest.app import create_app
    from service.settings import Settings

    app = create_app(Settings(grpc_port=0, poll_seconds=0))
    document: dict[str, Any] = TestClient(app).get("/openapi.json").json()
    return document


def cell(text: str) -> str:
    """Text from the code as a Markdown table cell: no raw HTML, no column breaks."""
    # Code spans show their text as it is; only the prose between them needs escaping.
    parts = re.split(r"(`[^`]*`)", text)
    escaped = (p if p.startswith("`") else html.escape(p, quote=False) for p in parts)
    return "".join(escaped).replace("|", "\\|")


def routes() -> str:
    """One table per tag: method, path, what it does, the status codes it documents."""
    by_tag: dict[str, list[str]] = {}
    for path, operations in openapi()["paths"].items():
        for method in sorted(operations, key=METHOD_ORDER.index):
            operation = operations[method]
            codes = ", ".join(sorted(operation.get("responses", {})))
            summary = cell(operation.get("summary", ""))
            row = f"| `{method.upper()}` | `{path}` | {summary} | {codes} |"
            by_tag.setdefault((operation.get("tags") or ["other"])[0], []).append(row)
    sections = []
    for tag, rows in by_tag.items():
        header = "| method | path | what it does | status codes |\n|---|---|---|---|"
        sections.append(f"### {tag[:1].upper()}{tag[1:]}\n\n{header}\n" + "\n".join(rows))
    return "\n\n".join(sections)


def settings() -> str:
    """Every setting: its environment variable, default and description."""
    from service.settings import Settings

    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, Path):  # the checkout's own folder: say so, not where it sits here
            default = "models/ of the checkout" if default.name == "models" else default
        default = "—" if default in (None, "") else f"`{default}`"
        rows.append(f"| `DLWP_{name.upper()}` | {default} | {cell(field.description or '')} |")
    return "\n".join(rows)


def metrics() -> str:
    """Every metric family the server registers: name, type and help text."""
    from prometheus_client import REGISTRY

    importlib.import_module("service.observability.metrics")
    rows = ["| metric | type | what it counts |", "|---|---|---|"]
    for family in sorted(REGISTRY.collect(), key=lambda f: f.name):
        if family.name.startswith("dlwp_"):
            name = family.name + ("_total" if family.type == "counter" else "")
            rows.append(f"| `{name}` | {family.type} | {cell(family.documentation)} |")
    return "\n".join(rows)


def layout() -> str:
    """Each subpackage of `service/` and its docstring."""
    import service

    root = Path(service.__file__).parent
    rows = ["| package | what it holds |", "|---|---|"]
    for init in sorted(root.glob("*/__init__.py")):
        module = importlib.import_module(f"service.{init.parent.name}")
        summary = " ".join((module.__doc__ or "").split())
        rows.append(f"| `service/{init.parent.name}/` | {cell(summary)} |")
    return "\n".join(rows)


PARTS: dict[str, Callable[[], str]] = {
    "routes": routes,
    "settings": settings,
    "metrics": metrics,
    "layout": layout,
}
