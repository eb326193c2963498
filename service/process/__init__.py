"""The serving process: the supervisor and its workers, the stop (drain, budget), the
connection-level protections, and `app`, the one place the two transports are put together into
the app a worker runs. `transport` is the one module that reaches into uvicorn's internals,
pinned to the versions it was tested with; everything else uses public APIs.

On top of everything: may import any part of `service`. The layers below read only its
framework-free state (`drain`, `budget`, `ports`); one reaching a module that imports uvicorn or
a transport fails the lint step.
"""
