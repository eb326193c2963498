"""The core: (model, version, decoded inputs) → outputs and the version that served them.

Holds the data plane, the per-model batchers and explanations. Imports no web or gRPC framework;
the transports (`service.rest`, `service.grpc`) call into it, never the other way round.
"""
