"""The serving process: the supervisor and its workers, the stop (drain, budget) and the
connection-level protections. `transport` is the one module that reaches into uvicorn's
internals, pinned to the versions it was tested with; everything else uses public APIs.
"""
