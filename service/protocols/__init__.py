"""What the protocols mean, apart from how they travel: the Open Inference Protocol's tensors and
checks, the task and TF Serving shapes, and the pydantic schemas that document them.

Used by both transports (`service.rest`, `service.grpc`); imports neither, nor the data plane,
nor a web or gRPC framework (FastAPI's path parameters live in `service.rest.deps`). May import
the repository, observability and model layers.
"""
