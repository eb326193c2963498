"""Load tests (locust) and the benchmark (`make bench`).

`harness` holds what every benchmark shares (scenarios, a server under test, wrk runs); the
sections import it, never `bench` or each other. Servers start through
`tests.support.servers`, the helper the test suite uses.
"""
