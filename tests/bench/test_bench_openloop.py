"""`mlserve bench --rate`: the open-loop load against a real embedded server and the canned one."""
from __future__ import annotations

import pytest

from mlserve.bench import CannedServer
from mlserve.bench.openloop import percentile, run_open_loop, schedule
from support.cli import parse_json_stdout, run_cli
from support.ports import free_port

pytestmark = pytest.mark.slow


def test_open_loop_against_the_model_server(digits_server) -> None:
    proc = run_cli("bench", "--url", digits_server.url, "--rate", "20,50", "--duration", "0.5",
                   "--arrival", "constant", "--json")
    assert proc.returncode == 0, proc.stderr
    report = parse_json_stdout(proc)
    assert report["open_loop"] is True and [lv["rate"] for lv in report["levels"]] == [20.0, 50.0]
    for lv in report["levels"]:
        assert lv["sent"] == int(lv["rate"] * 0.5) and lv["ok"] == lv["sent"]
        assert lv["errors"] == 0 and lv["drops"] == 0
        assert 0 < lv["p50_ms"] <= lv["p99_ms"] <= lv["p999_ms"] <= lv["max_ms"]


@pytest.mark.parametrize("extra", [["--protocol", "v2"], ["--protocol", "v2", "--binary"]])
def test_open_loop_v2_rest(digits_server, extra) -> None:
    proc = run_cli("bench", "--url", digits_server.url, "--rate", "20", "--duration", "0.5",
                   "--arrival", "constant", "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    lv = parse_json_stdout(proc)["levels"][0]
    assert lv["sent"] == 10 and lv["ok"] == 10 and lv["errors"] == 0 and lv["drops"] == 0


def test_errors_and_unanswered_requests_are_counted() -> None:
    with CannedServer(error_every=2) as server:
        lv = run_open_loop(server.url, "/x", b"{}", rates=[100], duration=0.4, arrival="constant")[0]
    assert lv.sent == 40 and lv.ok == 20 and lv.errors == 20 and "canned error" in lv.error_messages[0]
    with CannedServer(hold_after=5) as server:  # a server that stops answering: the rest time out
        lv = run_open_loop(server.url, "/x", b"{}", rates=[50], duration=0.4, arrival="constant",
                           timeout=0.5)[0]
    assert lv.ok == 5 and lv.errors == lv.sent - 5 and "unanswered" in lv.error_messages[0]


def test_over_max_in_flight_is_a_drop_not_a_queue() -> None:
    with CannedServer(hold_after=1) as server:
        lv = run_open_loop(server.url, "/x", b"{}", rates=[100], duration=0.3, arrival="constant",
                           max_in_flight=10, timeout=0.2)[0]
    # the first is answered (a slot frees), then 10 stay in flight and the rest of the 30 drop
    assert lv.ok == 1 and lv.sent == 11 and lv.drops == 19


def test_latency_past_capacity_grows_from_each_scheduled_send() -> None:
    """A server of one worker taking 10 ms a request (capacity 100 req/s), offered 200 req/s for
    1 s: requests wait behind each other, and the open loop, timing each from its scheduled send,
    sees the queue grow to about half a second. A closed loop with one client would have seen
    10 ms (coordinated omission). Only lower bounds are asserted: sleeps never run short."""
    with CannedServer(service_ms=10) as server:
        lv = run_open_loop(server.url, "/x", b"{}", rates=[200], duration=1.0, arrival="constant",
                           connections=4, max_in_flight=1000, timeout=10)[0]
        below = run_open_loop(server.url, "/x", b"{}", rates=[20], duration=1.0, arrival="constant",
                              connections=4, max_in_flight=1000, timeout=10)[0]
    assert lv.errors == 0 and lv.drops == 0 and lv.ok == lv.sent
    assert lv.p99_ms >= 300  # the last of ~200 requests waited behind ~100 others
    assert lv.achieved_per_s <= 110  # what one 10 ms worker can answer, not the 200 offered
    assert below.ok == below.sent and below.p50_ms >= 10  # under capacity: about the service time


def test_schedules_and_percentiles() -> None:
    assert schedule(10, 1.0, "constant") == [i / 10 for i in range(10)]
    poisson = schedule(1000, 2.0, "poisson", seed=1)
    assert 1800 < len(poisson) < 2200 and poisson == sorted(poisson) and poisson[-1] < 2.0
    assert percentile(list(range(1, 1001)), 0.99) == 990 and percentile([], 0.5) is None


def test_self_test_open_loop() -> None:
    proc = run_cli("bench", "--self-test", "--rate", "200", "--duration", "0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    lv = parse_json_stdout(proc)["levels"][0]
    assert lv["ok"] == lv["sent"] > 0 and lv["errors"] == 0


@pytest.mark.parametrize("args", [["--rate", "0"], ["--rate", "a"], ["--rate", "10", "--arrival", "burst"],
                                  ["--rate", "10", "--grpc"], ["--rate", "10", "--max-inflight", "0"]])
def test_bad_rates_are_usage_errors(args) -> None:
    proc = run_cli("bench", "--url", f"http://127.0.0.1:{free_port()}", *args)
    assert proc.returncode == 2, proc.stderr


def test_self_test_open_loop_plot_and_max_inflight(tmp_path) -> None:
    # --plot draws latency and achieved rate against offered rate; --max-inflight is reported
    out = tmp_path / "rate.png"
    proc = run_cli("bench", "--self-test", "--rate", "100,200", "--duration", "0.3", "--max-inflight", "64",
                   "--plot-file", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = parse_json_stdout(proc)
    assert report["max_inflight"] == 64 and [lv["rate"] for lv in report["levels"]] == [100.0, 200.0]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
