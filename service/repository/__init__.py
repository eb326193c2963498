"""The model repository: the live table of served versions (each with its batcher) and the atomic
swap, and the desired state (unloaded models, pins) that every worker and replica reconciles from.

Below the data plane and the protocols: may import `service.observability` and `service.model`;
never the data plane, the protocols, a transport, or a web or gRPC framework.
"""
