"""What the protocols mean, apart from how they travel: the Open Inference Protocol's tensors and
checks, the task and TF Serving shapes, and the pydantic schemas that document them.

Used by both transports (`service.rest`, `service.grpc`); imports neither.
"""
