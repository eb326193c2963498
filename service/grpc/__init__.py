"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), beside `routes/`.

`protocol` holds the message classes, `converters` turns them into the tensors the V2 REST
routes use and back, `servicer` answers each RPC through the same `DataPlane`, and `server`
starts and stops it with the HTTP server.
"""
