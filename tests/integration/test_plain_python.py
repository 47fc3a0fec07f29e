"""The modules setup.py compiles, run as their plain-Python source (what an install with
``PUSHLINE_PURE_PYTHON=1``, or on a machine without a C compiler, runs): the transport, provider
client and dispatcher tests pass on it too. The rest of the suite runs on the compiled build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dispatcher", "schemas", "pushline", "producers", "receipts", "tests")
# What this install compiled (an extension module beside its source, as tests/conftest.py finds
# them), rather than a third copy of setup.py's list.
COMPILED = sorted(
    f"{so.parent.name}.{so.name.split('.', 1)[0]}"
    for so in ROOT.glob("*/*.so")
    if so.with_name(so.name.split(".", 1)[0] + ".py").exists()
)
TESTS = (
    "tests/unit/test_h2transport.py",
    "tests/unit/test_h2transport_emulator.py",
    "tests/unit/test_provider_clients.py",
    "tests/integration/test_dispatcher.py",
)
# a few of the pipeline tests: every provider answer, a GOAWAY, a restart with duplicates
PIPELINE_TESTS = "every_provider_reason or goaway or duplicate_is_not_sent"


def test_the_dispatcher_tests_pass_on_the_plain_python_source(tmp_path: Path) -> None:
    for name in PACKAGES:  # a copy without the extension modules: the sources are what imports
        shutil.copytree(
            ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.so", "__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    probe = (
        "import importlib, sys; print(*(importlib.import_module(m).__file__ for m in sys.argv[1:]))"
    )
    files = subprocess.run(
        [sys.executable, "-c", probe, *COMPILED],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    assert files == [str(tmp_path / (m.replace(".", "/") + ".py")) for m in COMPILED]

    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS,
         "-k", f"not test_dispatcher.py or {PIPELINE_TESTS}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 100 and "failed" not in summary, summary  # the -k kept the files' tests
