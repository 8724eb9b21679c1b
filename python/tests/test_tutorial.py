"""The tutorial's programs (SCENARIOS.md S1-S14, in tutorial/) on multiproc's primitives,
each checked for the outcome the tutorial shows.

Each program runs unchanged in its own interpreter, the way ``python -m multiproc prog.py``
runs it (``multiproc.install()`` first), with the seed's sleeps scaled down (``time.sleep``
scaled in the runner; not for S3/S4, where the sleeps make the race). Output goes out a
whole line at a time, so that lines of concurrent processes never mix and those of
processes killed at the end are kept. Every run is bounded; S7 and S8,
which block forever in the seed, are shown blocked for a bounded while and then killed
(their whole process group)."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "tutorial"

RUNNER = """
import os, runpy, sys, time
import multiproc
multiproc.install()

class Lines:
    # One write(2) per whole line (print writes the text and the newline separately), so
    # that the lines of concurrent processes never mix, and none is lost with a killed one.
    buf = ""
    def write(self, s):
        self.buf += s
        *lines, self.buf = self.buf.split("\\n")
        for line in lines:
            os.write(1, (line + "\\n").encode())
        return len(s)
    def flush(self):
        pass

sys.stdout = Lines()
scale = float(sys.argv[2])
_sleep = time.sleep
time.sleep = lambda t: _sleep(t * scale)
g = runpy.run_path(sys.argv[1], run_name="__main__")
for name in ("q", "queue", "lock", "parent_conn"):
    if name in g:
        print("TYPE", name, type(g[name]).__module__, flush=True)
"""

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(prog, cwd, scale=0.1, timeout=60, blocks=False):
    """Runs ``prog``; returns (output lines, still running at ``timeout``)."""
    p = subprocess.Popen([sys.executable, "-c", RUNNER, str(HERE / prog), str(scale)],
                         cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        running = False
    except subprocess.TimeoutExpired:
        running = True
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=30)
    if not running:
        assert p.returncode == 0, err
    assert running == blocks, f"blocked: {running}, expected {blocks}\n{out}\n{err}"
    lines = [ANSI.sub("", line) for line in out.splitlines()]
    types = {l.split()[1]: l.split()[2] for l in lines if l.startswith("TYPE ")}
    assert all(m.startswith("multiproc.") for m in types.values()), types
    return [l for l in lines if not l.startswith("TYPE ")], types


def pairs(lines):
    """(n, event) in output order from S1/S2's "n: pid is running" / "n:pid is done"."""
    return [(m.group(1), m.group(2)) for m in
            (re.match(r"(\d+):\s*\d+ is (running|done)", l) for l in lines) if m]


def test_s01_without_a_lock_output_interleaves(tmp_path):
    events = pairs(run("s01_no_lock.py", tmp_path, scale=1)[0])
    assert sorted(events) == sorted((str(n), e) for n in range(5) for e in ("running", "done"))
    adjacent = all(events[i][0] == events[i + 1][0] for i in range(0, 10, 2))
    assert not adjacent, events


def test_s02_a_lock_serializes(tmp_path):
    lines, types = run("s02_lock.py", tmp_path, scale=0.1)
    events = pairs(lines)
    assert len(events) == 10
    for i in range(0, 10, 2):
        assert events[i][0] == events[i + 1][0]
        assert (events[i][1], events[i + 1][1]) == ("running", "done")
    assert types["lock"] == "multiproc.synchronize"


def tickets(tmp_path, prog):
    (tmp_path / "db").write_text('{"count":1}')
    lines, _ = run(prog, tmp_path, scale=1)
    return lines, json.loads((tmp_path / "db").read_text())["count"]


def test_s03_the_race_oversells(tmp_path):
    lines, count = tickets(tmp_path, "s03_tickets_race.py")
    assert lines.count("剩余票数1") == 3
    assert lines.count("购票成功") > 1  # more than one buyer bought the single ticket
    assert count == 0


def test_s04_a_lock_sells_one(tmp_path):
    lines, count = tickets(tmp_path, "s04_tickets_lock.py")
    assert lines.count("购票成功") == 1
    assert lines.count("sorry,没票了亲!") == 2
    assert count == 0


def test_s05_bounded_queue(tmp_path):
    lines, types = run("s05_bounded_queue.py", tmp_path)
    assert lines == ["队列已经满了", "True", "3", "2", "1", "队列已经空了", "True"]
    assert types["q"] == "multiproc.queues"


def test_s06_one_queue_many_processes(tmp_path):
    lines, types = run("s06_shared_queue.py", tmp_path)
    got = [l for l in lines if l in ("小鬼", "姑娘,多少钱~")]
    assert sorted(got) == ["姑娘,多少钱~", "小鬼"]  # each item received once, by someone
    assert "》》》》》》》》" in lines
    assert types["q"] == "multiproc.queues"


def test_s07_many_to_many_and_the_tenth_consumer_blocks(tmp_path):
    lines, _ = run("s07_many_to_many.py", tmp_path, timeout=8, blocks=True)
    got = [l for l in lines if "(get):" in l]
    assert len(got) == 9
    put = [l.split("(get):")[1].split("(put)")[0] for l in got]
    assert len(set(put)) == 9  # nine producers, each item once


def test_s08_a_consumer_without_a_stop_never_ends(tmp_path):
    lines, _ = run("s08_no_stop.py", tmp_path, scale=0.1, timeout=12, blocks=True)
    made = [l for l in lines if "生产了" in l]
    eaten = [l for l in lines if " 吃 " in l]
    assert len(made) == 9 and len(eaten) == 9
    assert lines[0] == "主"


def test_s09_sentinel(tmp_path):
    lines, _ = run("s09_sentinel.py", tmp_path, scale=0.1)
    assert len([l for l in lines if " 吃 " in l]) == 4


def test_s10_sentinels_from_the_parent(tmp_path):
    lines, _ = run("s10_parent_sentinels.py", tmp_path, scale=0.1)
    eaten = [l.split(" 吃了 ")[1] for l in lines if " 吃了 " in l]
    assert sorted(eaten) == sorted(f"泔水{i}" for i in range(1, 10))


def test_s11_one_sentinel_per_consumer(tmp_path):
    lines, _ = run("s11_sentinel_per_consumer.py", tmp_path, scale=0.1)
    got = [l.split(": ")[1] for l in lines if "收到数据" in l]
    assert sorted(got) == sorted(f"data  {i}" for i in range(1, 7) for _ in range(3))
    assert len([l for l in lines if "消费完了" in l]) == 4


def test_s12_joinable_queue(tmp_path):
    lines, types = run("s12_joinable.py", tmp_path, scale=0.1)
    eaten = [l for l in lines if " 吃 " in l]
    assert len(eaten) == 30
    last_eaten = max(i for i, l in enumerate(lines) if " 吃 " in l)
    done = [i for i, l in enumerate(lines) if l.endswith("生产结束~~~~~~")]
    # The last producer to finish putting joins after all 30 were eaten. An earlier one's
    # join may return sooner, when the consumers drain the queue while the others still put
    # (Python's `JoinableQueue.join` waits for the items put so far): seen once under load.
    assert len(done) == 3 and max(done) > last_eaten
    assert "主" in lines
    assert types["q"] == "multiproc.queues"


def test_s13_pipe(tmp_path):
    lines, types = run("s13_pipe.py", tmp_path)
    assert lines == ["Hello 妹妹"]
    assert types["parent_conn"] == "multiproc.connection"


def test_s14_eof_once_every_copy_is_closed(tmp_path):
    lines, _ = run("s14_pipe_eof.py", tmp_path)
    assert lines == ["hello"]  # then EOFError ended the child's loop: the program ended
