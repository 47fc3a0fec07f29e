"""The one compiled module: ``dispatcher/_hpack.py`` through mypyc (same source, typed Python).

HPACK coding is the largest single item of the dispatcher's per-request CPU that stays in Python
(the response's Huffman-coded apns-id, above all); compiled, a response block decodes in 1.6 µs
instead of 4.1 and a request block encodes in 1.3 µs instead of 2.2 (``pushline bench`` numbers
in the README). ``PUSHLINE_PURE_PYTHON=1``, or a machine without mypyc or a C compiler, installs
the module as plain Python: same behaviour, slower.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

_COMPILED = "dispatcher/_hpack.py"

ext_modules = []
if os.environ.get("PUSHLINE_PURE_PYTHON") != "1":
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.stderr.write("mypyc is not installed: dispatcher/_hpack.py stays plain Python\n")
    else:
        # This module only: not the project's mypy configuration (strict on every package, run
        # by `make typecheck`), and not the packages it is imported through (the build
        # environment has none of their dependencies).
        ext_modules = mypycify(
            ["--config-file=", "--follow-imports=silent", "--ignore-missing-imports", _COMPILED],
            opt_level="3",
        )

setup(ext_modules=ext_modules)
