"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), beside `service.rest`.

`protocol` holds the message classes, `converters` turns them into tensors and back, `servicer`
answers each RPC through the same `DataPlane`, and `server` starts and stops it
(`service.process.app` runs it beside HTTP). A transport: never imports `service.rest`, may
import every layer below (data plane, protocols, repository, observability, model).
"""
