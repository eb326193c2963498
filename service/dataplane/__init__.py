"""The core: (model, version, decoded inputs) → outputs and the version that served them.

Holds the data plane and explanations. Below the transports (`service.rest`, `service.grpc`),
which call into it, never the other way round; beside `service.protocols`, which it does not
import. May import the repository, observability and model layers; no web or gRPC framework.
"""
