"""The serving half of dlwp-serving: artifacts in, predictions out, over HTTP and gRPC.

Subpackages in layers, each importing only those below it (`lint-imports` checks the contracts
in pyproject.toml): the transports `rest` and `grpc` (never each other) → `dataplane` and
`protocols` → `repository` → `observability` → `model`. `process` runs it all and composes the
transports; `errors` and `settings` are shared by every layer.
"""
