"""``pushline bench dispatcher`` end to end on the test stack (it reuses the broker and emulators)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pushline.bench._baselines import ApnsTarget
from pushline.bench._fcm_baselines import FcmTarget
from pushline.stack import StackHandle
from tests.integration.pipeline import control

pytestmark = pytest.mark.integration


def _bench(
    env: dict[str, str], *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pushline", "bench", "dispatcher", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _dispatcher_pids(env: dict[str, str]) -> set[int]:
    """``pushline dispatcher`` processes sending to this stack's emulators (identified by their
    CA file): other benchmarks may run dispatchers on the same machine meanwhile."""
    ours = f"PUSHLINE_CA_FILE={env['PUSHLINE_CA_FILE']}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"pushline" in cmdline
            and b"dispatcher" in cmdline
            and b"bench" not in cmdline
            and ours in environ
        ):
            pids.add(int(entry.name))
    return pids


@pytest.fixture
def bench_env(stack: StackHandle) -> Iterator[dict[str, str]]:
    """The test stack's environment for a ``bench dispatcher`` run; afterwards, no dispatcher the
    run started may be left running."""
    env = {**os.environ, **stack.env}
    if not env.get("APNS_URL") or not env.get("FCM_URL"):
        pytest.skip("the stack under test has no provider emulators")
    before = _dispatcher_pids(env)
    yield env
    assert _dispatcher_pids(env) - before == set()


def _is_rate(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _recorded_after_one_push(env: dict[str, str]) -> int:
    """Send one valid push straight to the emulator; how many pushes its record holds then."""
    target = ApnsTarget.from_env(env)
    with control(env, "APNS") as ctl:
        before = len(ctl.pushes())
        with httpx.Client(http2=True, verify=target.ssl_context()) as client:
            response = client.post(
                f"{target.url}/3/device/{os.urandom(32).hex()}",
                content=b'{"aps":{"alert":"after the bench"}}',
                headers={
                    "authorization": f"bearer {target.jwt()}",
                    "apns-topic": target.topic,
                    "apns-push-type": "alert",
                    "apns-id": str(uuid.uuid4()),
                },
            )
        assert response.status_code == 200, response.text
        return len(ctl.pushes()) - before


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="CPU time is read from /proc")
def test_bench_dispatcher_reports_every_number_and_every_notification_gets_an_outcome(
    bench_env: dict[str, str],
) -> None:
    env = bench_env

    done = _bench(env, "--notifications", "500", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # stdout is exactly one JSON object
    assert report["notifications"] == 500
    assert report["outcomes"] == 500
    assert report["states"] == {"ACCEPTED": 500}, report["not_accepted"]
    assert report["attempts"] == {"1": 500}
    # The emulator accepted exactly one push per notification while the dispatcher ran.
    assert report["emulator_accepted"] == 500
    assert report["processes"] == 1
    assert report["dispatcher_exit_codes"] == [0]  # it drained and left on SIGTERM
    assert _is_rate(report["pushline_per_s"])
    assert report["pushline_total_per_s"] == pytest.approx(report["pushline_per_s"])
    assert _is_rate(report["cpu_us_per_notification"])
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]

    assert set(report["baselines"]) >= {"aioapns", "httpx"}
    for name, per_s in report["baselines"].items():
        detail = report["baseline_details"][name]
        if per_s is None:
            assert detail["reason"], f"{name} is null without a reason"
        else:
            assert _is_rate(per_s), name
            assert detail["errors"] == 0, (name, detail)
            assert detail["requests"] == 500, (name, detail)
            assert 0 < detail["p50_ms"] <= detail["p99_ms"], (name, detail)
    if report["ceiling_per_s"] is None:
        assert report["ceiling"]["reason"]
    else:
        assert _is_rate(report["ceiling_per_s"])
        assert report["ceiling"]["errors"] == 0, report["ceiling"]

    assert report["machine"]["cpu_count"] >= 1
    assert {row["name"].split(" ")[0] for row in report["rows"]} >= {
        "pushline",
        "aioapns",
        "httpx",
        "ceiling",
    }

    # Nothing left behind: no dispatcher process, and the shared emulator records pushes again.
    assert _recorded_after_one_push(env) == 1


def _fcm_recorded_after_one_push(env: dict[str, str]) -> int:
    """Send one valid message straight to the FCM emulator; how many its record holds then."""
    target = FcmTarget.from_env(env)
    with control(env, "FCM") as ctl:
        before = len(ctl.pushes())
        with httpx.Client(http2=True, verify=target.ssl_context()) as client:
            response = client.post(
                target.send_url,
                json={"message": {"token": "t" * 64, "notification": {"title": "after"}}},
                headers={"authorization": f"Bearer {target.access_token()}"},
            )
        assert response.status_code == 200, response.text
        return len(ctl.pushes()) - before


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="CPU time is read from /proc")
def test_paced_bench_reports_added_latency_and_every_notification_is_accounted_for(
    bench_env: dict[str, str],
) -> None:
    env = bench_env

    done = _bench(
        env, "--notifications", "300", "--rate", "200", "--no-baselines", "--broker-hop", "--json"
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["mode"] == "paced"
    assert report["notifications"] == report["measured_notifications"] == 300
    assert report["outcomes"] == 300
    assert report["states"] == {"ACCEPTED": 300}, report["not_accepted"]
    # The warm-up is not counted: the emulator accepted one push per measured notification.
    assert report["emulator_accepted"] == 300
    assert report["dispatcher_exit_codes"] == [0]
    paced = report["paced"]
    assert paced["rate_requested"] == 200
    assert paced["warmup_notifications"] > 0
    # Paced, not a burst (which the dispatcher drains in well under 0.1 s): 300 at 200/s are sent
    # over about 1.5 s, and their outcomes come out over about as long.
    assert 0.5 * 200 <= paced["produced_per_s"] <= 1.1 * 200, paced
    assert paced["window_s"] >= 0.8 * 299 / 200, paced
    assert _is_rate(paced["delivered_per_s"])
    assert _is_rate(paced["cpu_us_per_notification"])
    added = paced["added_latency_ms"]
    assert 0 <= added["p50"] <= added["p99"] <= added["max"], added
    provider = paced["provider_latency_ms"]
    assert 0 < provider["p50"] <= provider["p99"] <= provider["max"], provider
    # A notification cannot be answered faster than the provider answered it (+/- 1 ms rounding).
    assert added["max"] >= provider["max"] - 1, (added, provider)
    # --no-baselines: only the dispatcher's rows.
    assert report["baselines"] == {}
    assert report["ceiling"] is None
    assert [row["name"].split(" ")[0] for row in report["rows"]] == ["pushline"] * 4
    before = paced["before_send_ms"]
    # the part before the provider request is part of the added latency
    assert 0 <= before["p50"] <= before["p99"] <= added["max"], (before, added)
    # the probe saw every measured request (and no warm-up one) on its own consumer
    hop = paced["broker_hop_ms"]
    assert hop["requests"] == 300, hop
    assert 0 <= hop["p50"] <= hop["p99"], hop
    # how busy each CPU the bench could use was over the window (Linux: /proc/stat)
    if Path("/proc/stat").exists():
        busy = report["cpu_busy"]
        assert {int(cpu) for cpu in busy} == set(os.sched_getaffinity(0)), busy
        assert all(0 <= share <= 1 for share in busy.values()), busy
        assert sum(busy.values()) > 0, busy  # the dispatcher alone used some


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="CPU time is read from /proc")
def test_fcm_bench_delivers_every_notification_and_has_the_fcm_baselines(
    bench_env: dict[str, str],
) -> None:
    env = bench_env

    done = _bench(env, "--provider", "fcm", "--notifications", "300", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["provider"] == "fcm"
    assert report["outcomes"] == 300
    assert report["states"] == {"ACCEPTED": 300}, report["not_accepted"]
    # Counted by the FCM emulator: the notifications went to FCM, once each.
    assert report["emulator_accepted"] == 300
    assert report["dispatcher_exit_codes"] == [0]
    assert _is_rate(report["pushline_per_s"])

    assert report["baselines"]["aioapns"] is None
    assert report["baseline_details"]["aioapns"]["reason"] == "APNs only"
    httpx_detail = report["baseline_details"]["httpx"]
    assert _is_rate(report["baselines"]["httpx"]), httpx_detail
    assert httpx_detail["errors"] == 0
    assert httpx_detail["requests"] == 300
    if shutil.which("h2load") is None:
        assert "h2load" in report["ceiling"]["reason"]
    else:
        assert _is_rate(report["ceiling_per_s"]), report["ceiling"]
        assert report["ceiling"]["errors"] == 0, report["ceiling"]
    names = [row["name"] for row in report["rows"]]
    assert names[0].startswith("pushline to FCM")
    assert names[1:] == ["aioapns", "httpx", "ceiling (h2load)"]
    assert _fcm_recorded_after_one_push(env) == 1


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="CPU time is read from /proc")
def test_scaling_runs_one_process_then_k_and_reports_their_ratio(bench_env: dict[str, str]) -> None:
    env = bench_env

    done = _bench(
        env, "--processes", "2", "--scaling", "--notifications", "2000", "--no-baselines", "--json"
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    scaling = report["scaling"]
    assert scaling["processes"] == 2
    single = scaling["single_process"]
    assert single["states"] == {"ACCEPTED": 2000}
    assert single["emulator_accepted"] == 2000
    assert single["dispatcher_exit_codes"] == [0]
    assert report["states"] == {"ACCEPTED": 2000}, report["not_accepted"]
    assert report["emulator_accepted"] == 2000
    assert report["dispatcher_exit_codes"] == [0, 0]
    assert scaling["factor"] == pytest.approx(report["pushline_total_per_s"] / single["per_s"])
    assert report["pushline_per_s"] == pytest.approx(report["pushline_total_per_s"] / 2)
    assert [row["name"] for row in report["rows"]] == [
        "pushline (1 process)",
        "pushline (2 processes, per process)",
    ]


_USABLE_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


@pytest.mark.skipif(
    len(_USABLE_CPUS) < 2,
    reason=f"--pin needs 2 usable CPUs (one for the dispatcher), there are {len(_USABLE_CPUS)}",
)
def test_pinned_bench_runs_its_dispatcher_alone_on_the_top_cpu(bench_env: dict[str, str]) -> None:
    env = bench_env
    before = _dispatcher_pids(env)
    args = ["--pin", "--notifications", "300", "--no-baselines", "--json"]
    bench = subprocess.Popen(
        [sys.executable, "-m", "pushline", "bench", "dispatcher", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Watch the affinities while it runs: the dispatcher's, and the bench's while a dispatcher
    # lives (read first, so the dispatcher was still running after it).
    dispatchers: dict[int, set[int]] = {}
    bench_cpus: list[set[int]] = []
    with ThreadPoolExecutor(1) as pool:
        output = pool.submit(bench.communicate, timeout=240)
        try:
            while not output.done():
                for pid in _dispatcher_pids(env) - before:
                    try:
                        bench_now = os.sched_getaffinity(bench.pid)
                        dispatchers[pid] = os.sched_getaffinity(pid)
                    except OSError:
                        continue  # one of them has just exited
                    bench_cpus.append(bench_now)
                time.sleep(0.05)
            stdout, stderr = output.result()
        finally:
            if bench.poll() is None:
                bench.kill()

    assert bench.returncode == 0, stderr
    report = json.loads(stdout)
    top, rest = _USABLE_CPUS[-1], _USABLE_CPUS[:-1]
    pinning = report["pinning"]
    assert pinning["dispatcher_cpus"] == [top]
    assert pinning["other_cpus"] == rest
    assert pinning["baselines_cpu"] is None  # --no-baselines
    # The test's stack was started outside the bench: the bench cannot pin it, and says so.
    assert pinning["on_other_cpus"] == ["bench"]
    assert pinning["not_pinned"] == ["broker", "schema registry", "emulators"]
    assert pinning["note"].startswith(f"pinned: dispatcher on CPU {top}; bench on CPU")
    assert report["machine"]["usable_cpus"] == len(_USABLE_CPUS)  # read after the pin ended
    assert report["outcomes"] == report["notifications"] == 300
    assert report["states"] == {"ACCEPTED": 300}, report["not_accepted"]
    assert report["emulator_accepted"] == 300
    assert report["dispatcher_exit_codes"] == [0]
    # What the processes really had, seen from outside.
    assert list(dispatchers.values()) == [{top}], dispatchers
    assert bench_cpus, "no dispatcher was seen while the bench ran"
    assert all(cpus == set(rest) for cpus in bench_cpus), bench_cpus


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--notifications", "0"], "--notifications"),
        (["--processes", "0"], "--processes"),
        (["--processes", "3", "--partitions", "2"], "--partitions"),
        (["--notifications", "many"], "invalid int value"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    # No stack is needed: arguments are checked before anything starts.
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    done = _bench(env, *args, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]


def _service_pids(service: bytes) -> set[int]:
    """Processes running ``pushline <service>`` (not a ``pushline bench ...`` of it)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pushline" in cmdline and service in cmdline and b"bench" not in cmdline:
            pids.add(int(entry.name))
    return pids


def _bench_cmd(
    env: dict[str, str], what: str, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pushline", "bench", what, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="CPU time is read from /proc")
def test_bench_receipts_api_reports_rates_and_every_accepted_receipt_reached_the_topic(
    stack: StackHandle,
) -> None:
    env = {**os.environ, **stack.env}
    before = _service_pids(b"receipts-api")

    done = _bench_cmd(env, "receipts-api", "--seconds", "2", "--connections", "8", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # stdout is exactly one JSON object
    assert _is_rate(report["requests_per_s"])
    assert _is_rate(report["requests_per_core_s"])
    assert report["errors"] == 0, report["statuses"]
    assert report["requests"] > 0
    assert report["statuses"] == {"202": report["requests"]}
    assert report["produced"] == report["accepted_total"] >= report["requests"]
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert report["api_exit_code"] == 0
    assert _service_pids(b"receipts-api") - before == set()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="CPU time is read from /proc")
def test_bench_reconciler_gets_every_expected_status_and_reports_rates(
    stack: StackHandle,
) -> None:
    env = {**os.environ, **stack.env}
    before = _service_pids(b"reconciler")

    done = _bench_cmd(env, "reconciler", "--events", "2000", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["events"] == 2000
    assert report["outcomes"] == 1000
    assert report["orphan_receipts"] + report["matched_receipts"] == 1000
    # One ACCEPTED per outcome, one DELIVERED per receipt that has an outcome, nothing else.
    assert report["expected_statuses"] == 1000 + report["matched_receipts"]
    assert report["statuses"] == report["expected_statuses"]
    assert _is_rate(report["events_per_s"])
    assert _is_rate(report["cpu_us_per_event"])
    assert report["reconciler_exit_code"] == 0  # it was stopped with SIGTERM and left cleanly
    assert _service_pids(b"reconciler") - before == set()


@pytest.mark.parametrize(
    ("what", "args", "message"),
    [
        ("receipts-api", ["--seconds", "0"], "--seconds"),
        ("receipts-api", ["--connections", "0"], "--connections"),
        ("reconciler", ["--events", "1"], "--events"),
        ("reconciler", ["--events", "lots"], "invalid int value"),
    ],
)
def test_bad_bench_arguments_get_one_line_and_exit_code_2(
    what: str, args: list[str], message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    done = _bench_cmd(env, what, *args, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
