"""Test and benchmark helpers that ship with the package: a scriptable fake upstream and server threads.

They are real servers on 127.0.0.1, so tests, benchmarks and policy authors exercise the gateway exactly
as applications do.
"""
