"""RQ (Python's Redis queue) doing the remote pool row's work: 2 SimpleWorker processes on
the benchmark's redis-server, N trivial jobs enqueued at once (enqueue_many, one pipeline),
timed from before the enqueue until the last job is finished. Prints
"rq_jobs_per_s<TAB>median" over the samples.

    python rq_bench.py URL N SAMPLES

Run by bench/src/remote.rs with the Python of a venv that has RQ (target/rqenv).
"""

import os
import statistics
import subprocess
import sys
import time
import uuid

from redis import Redis
from rq import Queue, Worker
from rq.registry import FinishedJobRegistry

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rq_tasks  # noqa: E402


def main():
    url, n, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conn = Redis.from_url(url)
    name = "bench-rq-" + uuid.uuid4().hex[:12]
    q = Queue(name, connection=conn)
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    workers = [
        subprocess.Popen(
            [rq, "worker", "-w", "rq.worker.SimpleWorker", "--url", url, "-q", name],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        t0 = time.monotonic()
        while Worker.count(queue=q) < 2:
            if time.monotonic() - t0 > 60:
                raise SystemExit("RQ workers did not register within 60 s")
            if any(w.poll() is not None for w in workers):
                raise SystemExit("an RQ worker exited at start")
            time.sleep(0.01)
        finished = FinishedJobRegistry(queue=q)
        key = finished.key
        # Warm-up: a few jobs through both workers.
        run(q, conn, key, 20)
        rates = []
        for _ in range(samples):
            t = run(q, conn, key, n)
            rates.append(n / t)
        print("rq_jobs_per_s\t%f" % statistics.median(rates))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()


def run(q, conn, key, n):
    """Seconds from enqueueing n jobs until all n are finished."""
    before = conn.zcard(key)
    t = time.monotonic()
    jobs = [Queue.prepare_data(rq_tasks.ident, (i,)) for i in range(n)]
    q.enqueue_many(jobs)
    deadline = t + 600
    while conn.zcard(key) < before + n:
        if time.monotonic() > deadline:
            raise SystemExit("RQ jobs not finished within 600 s")
        time.sleep(0.002)
    return time.monotonic() - t


if __name__ == "__main__":
    main()
