"""The compiled modules: mypyc builds C extensions from typed Python sources (the same source).

- ``dispatcher/_hpack.py``: HPACK coding, the largest single item of the dispatcher's per-request
  CPU that stays in Python (the response's Huffman-coded apns-id, above all); compiled, a response
  block decodes in 1.6 µs instead of 4.1 and a request block encodes in 1.3 µs instead of 2.2.
- the rest of the dispatcher's send path, in the same group (native calls between them): the HTTP/2
  connection (``dispatcher/_h2transport.py``), the APNs and FCM clients (``dispatcher/_apns.py``,
  ``dispatcher/_fcm.py``), the dispatcher loop (``dispatcher/_loop.py``) and its base class
  (``pushline/consumer_service.py``).
  Interleaved pinned benchmark runs (``pushline bench dispatcher --pin``, medians of six): CPU per
  notification 66 -> 58 µs with the transport and APNs client compiled, then 61 -> 56 µs with the
  loop (this machine varies ±10% run to run); the FCM client alone against its emulator ~20 -> ~18 µs
  per request.
- ``schemas/_avro_prims.py`` and ``schemas/_avro_generated.py`` (``make codegen``): the Avro codec
  of the event classes; a NotificationRequest decodes in ~3 µs instead of ~7.

``PUSHLINE_PURE_PYTHON=1``, or a machine without mypyc or a C compiler, installs them as plain
Python: same behaviour, slower (and what py-spy can see into, when profiling). What mypyc does not
compile is kept out of these modules: protocol classes (``dispatcher/_senders.py``), ``continue``
inside ``with``, one ``except ... as`` name for two exception types. Never monkeypatch them.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

# One build (group) per list: a group's modules call each other's functions natively. The Makefile
# reads the quoted paths below (its build-stamp dependencies): keep one quoted path per module.
_COMPILED = (
    [
        "dispatcher/_hpack.py",
        "dispatcher/_h2transport.py",
        "dispatcher/_apns.py",
        "dispatcher/_fcm.py",
        "dispatcher/_loop.py",
        "pushline/consumer_service.py",
    ],
    ["schemas/_avro_prims.py", "schemas/_avro_generated.py"],
)

ext_modules = []
if os.environ.get("PUSHLINE_PURE_PYTHON") != "1":
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.stderr.write("mypyc is not installed: the modules of setup.py stay plain Python\n")
    else:
        for group in _COMPILED:
            # These modules only: not the project's mypy configuration (strict on every package,
            # run by `make typecheck`), and not the packages they are imported through (the build
            # environment has none of their dependencies).
            ext_modules += mypycify(
                ["--config-file=", "--follow-imports=silent", "--ignore-missing-imports", *group],
                opt_level="3",
            )

setup(ext_modules=ext_modules)
