"""The serving process: running the HTTP server and its workers, the drain on SIGTERM, the
connection-level protections (deadlines, connection cap), and `app`, the one place the two
transports are put together into the app a worker runs.

On top of everything: may import any part of `service`. The layers below read only its
framework-free state (`drain`); one reaching a module that imports uvicorn or a transport fails
the lint step.
"""
