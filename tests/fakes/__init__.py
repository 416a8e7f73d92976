"""Fake external services on a loopback port: PiAPI, Runware, OpenAI, SD WebUI, remove.bg.

`tests.fakes.server.FakeServices` is the server (a Python API to record requests and inject
faults; runnable with `python -m tests.fakes.server`); the `fake_services` pytest fixture and
settings helpers live in `tests.fakes.fixtures`. Nothing is imported here, so that running the
server module as `__main__` does not import it twice.
"""
