"""Fault-injection suite: crashes, reconnect storms, stalled clients, a full disk.

Each test bounds its own run time with ``TIMEOUT`` multiples; the helpers in
this package (``servers``, ``clients``) are shared with the fuzz tests and the
soak benchmark.
"""
