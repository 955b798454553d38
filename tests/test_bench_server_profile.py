"""``python -m bench.server_profile`` reads ``perf report``'s text: its parts
of nats-server's CPU come out of the rows as perf prints them (when not on a
terminal perf pads each row and ends it with two more columns)."""

from __future__ import annotations

import pytest

from bench.server_profile import SERVER, parts_us, shares_of_report

REPORT = f"""\
# Children      Self  Shared Object      Symbol
# ........  ........  .................  ......
#
    82.54%     0.00%  nats-server        [.] runtime.goexit.abi0                                   -      -
    41.03%     0.55%  nats-server        [.] {SERVER}(*stream).processJetStreamAtomicBatchMsg      -      -
    26.26%     0.72%  nats-server        [.] {SERVER}(*stream).processJetStreamMsgWithBatch        -      -
    20.74%     0.07%  nats-server        [.] {SERVER}(*client).readLoop                            -      -
    18.42%    18.25%  [kernel.kallsyms]  [k] finish_task_switch.isra.0                             -      -
    11.32%     0.17%  nats-server        [.] runtime.sysmon                                        -      -
     7.78%     0.03%  nats-server        [.] {SERVER}newBatchStore                                 -      -
"""


def test_the_parts_are_the_rows_shares_times_the_servers_cpu_a_like():
    shares = shares_of_report(REPORT)
    assert shares[SERVER + "newBatchStore"] == pytest.approx(0.0778)
    got = parts_us(shares, 40.0)
    assert got["batch staging"] == pytest.approx((0.4103 - 0.2626) * 40)
    assert got["making batch stores"] == pytest.approx(0.0778 * 40)
    assert got["stream writes"] == pytest.approx(0.2626 * 40)
    assert got["client reads"] == pytest.approx(0.2074 * 40)
    assert got["scheduler"] == pytest.approx(0.1842 * 40)
    assert got["Go's monitor"] == pytest.approx(0.1132 * 40)


def test_a_run_with_no_batches_has_no_batch_parts():
    shares = shares_of_report(f"    42.84%     1.55%  nats-server        [.] {SERVER}(*stream).processJetStreamMsgWithBatch\n")
    got = parts_us(shares, 25.0)
    assert got["batch staging"] == 0.0 and got["making batch stores"] == 0.0
    assert got["stream writes"] == pytest.approx(0.4284 * 25)
