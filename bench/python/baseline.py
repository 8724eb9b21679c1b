"""Python multiprocessing baseline for the multiproc benchmark.

Usage: python3 baseline.py [--quick] CASE...
Prints one line per case: "name<TAB>median", in the unit of the matching Rust row
(us per operation, or messages/s, MB/s... as the case says). Each case is a function
below, registered in CASES; add yours next to the Rust rows you measure.
"""
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time

QUICK = False


def samples(full):
    return max(3, full // 3) if QUICK else full


def time_us(n_samples, iters, fn):
    fn()
    out = []
    for _ in range(n_samples):
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        out.append((time.perf_counter() - t) * 1e6 / iters)
    return statistics.median(out)


def _noop():
    pass


def process_fork():
    ctx = mp.get_context("fork")

    def once():
        p = ctx.Process(target=_noop)
        p.start()
        p.join()

    return time_us(samples(15), 10, once)


def process_spawn():
    ctx = mp.get_context("spawn")

    def once():
        p = ctx.Process(target=_noop)
        p.start()
        p.join()

    return time_us(samples(9), 2, once)


def lock_uncontended():
    """ns per acquire+release of multiprocessing.Lock, no contention."""
    lock = mp.Lock()
    n = 200_000

    def once():
        t = time.perf_counter()
        for _ in range(n):
            lock.acquire()
            lock.release()
        return (time.perf_counter() - t) * 1e9 / n

    return statistics.median([once() for _ in range(samples(9))])


def _contend(lock, counter, n):
    for _ in range(n):
        with lock:
            counter.value += 1


def lock_contended():
    """ns per lock+unlock with 2 fork processes incrementing a shared counter."""
    ctx = mp.get_context("fork")
    n = 50_000

    def once():
        lock = ctx.Lock()
        counter = ctx.Value("q", 0, lock=False)
        ps = [ctx.Process(target=_contend, args=(lock, counter, n)) for _ in range(2)]
        t = time.perf_counter()
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        el = time.perf_counter() - t
        assert counter.value == 2 * n
        return el * 1e9 / (2 * n)

    return statistics.median([once() for _ in range(samples(5))])


def _pong(a, b, n):
    for _ in range(n):
        a.wait()
        a.clear()
        b.set()


def event_ping_pong():
    """us per Event set/wait round trip between 2 processes."""
    ctx = mp.get_context("fork")
    n = 2_000

    def once():
        a, b = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_pong, args=(a, b, n))
        p.start()
        t = time.perf_counter()
        for _ in range(n):
            a.set()
            b.wait()
            b.clear()
        el = time.perf_counter() - t
        p.join()
        return el * 1e6 / n

    return statistics.median([once() for _ in range(samples(5))])

# ----- queue (bench/src/queue.rs) -----

def _q_producer(q, size, n):
    # size None: an 8-byte integer value (what the Rust side sends as [u8; 8])
    msg = 0x0707070707070707 if size is None else b"\x07" * size
    for _ in range(n):
        q.put(msg)


def _one_to_one(size, n, maxsize):
    ctx = mp.get_context("fork")
    q = ctx.Queue(maxsize)
    p = ctx.Process(target=_q_producer, args=(q, size, n))
    p.start()
    q.get()
    t = time.perf_counter()
    for _ in range(n - 1):
        q.get()
    rate = (n - 1) / (time.perf_counter() - t)
    p.join()
    return rate


def queue_1to1_8():
    return statistics.median(_one_to_one(8, 20000, 1000) for _ in range(samples(5)))


def _ff_one_to_one(size, n, maxsize):
    # faster-fifo (pip install faster-fifo), a C++ shared-memory queue with the
    # multiprocessing.Queue API: the fastest Python queue we know of. Its byte bound must
    # hold maxsize messages of this size.
    import faster_fifo

    ctx = mp.get_context("fork")
    q = faster_fifo.Queue(max_size_bytes=max(1 << 20, maxsize * (size + 64)), maxsize=maxsize)
    p = ctx.Process(target=_q_producer, args=(q, size, n))
    p.start()
    q.get(timeout=60)
    t = time.perf_counter()
    for _ in range(n - 1):
        q.get(timeout=60)
    rate = (n - 1) / (time.perf_counter() - t)
    p.join()
    return rate


def queue_ff_1to1_8():
    return statistics.median(_ff_one_to_one(8, 100000, 1000) for _ in range(samples(5)))


def queue_ff_1to1_1m():
    return statistics.median(_ff_one_to_one(1 << 20, 300, 8) for _ in range(samples(5)))


def queue_1to1_int8():
    return statistics.median(_one_to_one(None, 20000, 1000) for _ in range(samples(5)))


def queue_1to1_64():
    return statistics.median(_one_to_one(64, 20000, 1000) for _ in range(samples(5)))


def queue_1to1_1m():
    # messages/s of 1 MiB == MiB/s
    return statistics.median(_one_to_one(1 << 20, 100, 8) for _ in range(samples(5)))


def _q_consumer(q, out):
    # As the Rust side: the clock at the first message and every 256th, counting only the
    # messages up to the last reading.
    k = 0
    first = last = 0
    counted = 0
    while True:
        x = q.get()
        if x is None:
            break
        k += 1
        if k == 1:
            first = last = time.time()
            counted = 1
        elif k % 256 == 0:
            last = time.time()
            counted = k
    out.put((first, last, counted))


def _two_to_two(size, n):
    ctx = mp.get_context("fork")
    q = ctx.Queue(1000)
    out = ctx.Queue()
    cs = [ctx.Process(target=_q_consumer, args=(q, out)) for _ in range(2)]
    for c in cs:
        c.start()
    ps = [ctx.Process(target=_q_producer, args=(q, size, n // 2)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    for _ in cs:
        q.put(None)
    r = [out.get() for _ in cs]
    for c in cs:
        c.join()
    first = min(x[0] for x in r)
    last = max(x[1] for x in r)
    total = sum(x[2] for x in r)
    return (total - 1) / (last - first)


def queue_2to2_64():
    return statistics.median(_two_to_two(64, 20000) for _ in range(samples(5)))


def _j_consumer(q):
    while True:
        x = q.get()
        q.task_done()
        if x is None:
            break


def _joinable(n):
    ctx = mp.get_context("fork")
    q = ctx.JoinableQueue(1000)
    c = ctx.Process(target=_j_consumer, args=(q,))
    c.start()
    q.put(b"x")
    q.join()
    msg = b"\x07" * 64
    t = time.perf_counter()
    for _ in range(n):
        q.put(msg)
    q.join()
    rate = n / (time.perf_counter() - t)
    q.put(None)
    c.join()
    return rate


def joinable_64():
    return statistics.median(_joinable(10000) for _ in range(samples(5)))


# ----- pipe (bench/src/pipe.rs) -----

def _pipe_echo_bytes(c, n):
    for _ in range(n):
        c.send_bytes(c.recv_bytes())


def _pipe_echo_obj(c, n):
    for _ in range(n):
        c.send(c.recv())


def _pipe_ping_pong(obj, n, warm=0):
    """us per round trip, after `warm` untimed ones."""
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_pipe_echo_obj if obj else _pipe_echo_bytes, args=(b, warm + n))
    p.start()
    msg = (12345, "hello") if obj else b"\x07" * 8
    for _ in range(warm):
        if obj:
            a.send(msg)
            a.recv()
        else:
            a.send_bytes(msg)
            a.recv_bytes()
    t = time.perf_counter()
    if obj:
        for _ in range(n):
            a.send(msg)
            a.recv()
    else:
        for _ in range(n):
            a.send_bytes(msg)
            a.recv_bytes()
    el = time.perf_counter() - t
    p.join()
    return el * 1e6 / n


def pipe_ping_pong_bytes():
    """us per round trip, 8-byte send_bytes/recv_bytes."""
    n = 5000 if QUICK else 20000
    return statistics.median(_pipe_ping_pong(False, n) for _ in range(samples(7)))


def pipe_ping_pong_obj():
    """us per round trip, send/recv of (12345, "hello")."""
    n = 5000 if QUICK else 20000
    return statistics.median(_pipe_ping_pong(True, n) for _ in range(samples(7)))


def _pipe_sender(go, c, kind, n):
    go.recv_bytes()
    if kind == "obj":
        m = (12345, "hello")
        for _ in range(n):
            c.send(m)
    elif kind == "obj1m":
        m = b"\x07" * (1 << 20)
        for _ in range(n):
            c.send(m)
    else:
        m = b"\x07" * kind
        for _ in range(n):
            c.send_bytes(m)


def _pipe_one_way(kind, n):
    ctx = mp.get_context("fork")
    r, w = ctx.Pipe(duplex=False)
    go_r, go_w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_pipe_sender, args=(go_r, w, kind, n))
    p.start()
    t = time.perf_counter()
    go_w.send_bytes(b"")
    if kind in ("obj", "obj1m"):
        for _ in range(n):
            r.recv()
    else:
        for _ in range(n):
            r.recv_bytes()
    el = time.perf_counter() - t
    p.join()
    return el


def pipe_one_way_64():
    """messages/s, one way, 64-byte send_bytes."""
    n = 50000 if QUICK else 200000
    return statistics.median(n / _pipe_one_way(64, n) for _ in range(samples(7)))


def pipe_one_way_obj():
    """messages/s, one way, send of (12345, "hello")."""
    n = 50000 if QUICK else 200000
    return statistics.median(n / _pipe_one_way("obj", n) for _ in range(samples(7)))


def pipe_1m():
    """MB/s, one way, 1 MiB send_bytes."""
    n = 100 if QUICK else 400
    return statistics.median((1 << 20) * n / _pipe_one_way(1 << 20, n) / 1e6 for _ in range(samples(7)))


def pipe_1m_obj():
    """MB/s, one way, send() of a 1 MiB bytes object (pickled)."""
    n = 100 if QUICK else 400
    return statistics.median((1 << 20) * n / _pipe_one_way("obj1m", n) / 1e6 for _ in range(samples(7)))


def _ident(x):
    return x


def _count_primes(n):
    c = 0
    for k in range(2, n):
        d = 2
        while d * d <= k:
            if k % d == 0:
                break
            d += 1
        else:
            c += 1
    return c


def pool_map_trivial():
    """ns per task: Pool(2).map over 100,000 identity tasks (default chunksize).

    The benchmark runs this with --quick (7 maps) in rounds between its own maps."""
    n = 100_000
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_ident, range(1000))
        out = []
        for _ in range(samples(21)):
            t = time.perf_counter()
            r = pool.map(_ident, range(n))
            out.append((time.perf_counter() - t) * 1e9 / n)
            assert len(r) == n
    return statistics.median(out)


def pool_map_cpu_speedup():
    """speed-up of Pool(2).map over one process, 32 CPU-bound tasks."""
    inputs = [2_000 + 400 * i for i in range(32)]
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_ident, range(10))
        out = []
        for _ in range(samples(5)):
            t = time.perf_counter()
            serial = [_count_primes(n) for n in inputs]
            one = time.perf_counter() - t
            t = time.perf_counter()
            par = pool.map(_count_primes, inputs)
            two = time.perf_counter() - t
            assert par == serial
            out.append(one / two)
    return statistics.median(out)


def shm_write_read_1m():
    """us per write of 1 MiB into a SharedMemory and read of it back out."""
    from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory(create=True, size=1 << 20)
    try:
        data = bytes(i % 256 for i in range(1 << 20))
        out = bytearray(1 << 20)

        def once():
            shm.buf[:] = data
            out[:] = shm.buf

        return time_us(samples(15), 50, once)
    finally:
        shm.close()
        shm.unlink()


def _dict_other(d, stop):
    i = 0
    while not stop.is_set():
        d[i % 100] = i
        d.get(i % 100)
        i += 1


def dict_get_insert_2p():
    """us per d[k] = v plus d.get(k) on a Manager().dict(), while another process does the
    same on it."""
    with mp.Manager() as m:
        d = m.dict()
        stop = mp.Event()
        p = mp.Process(target=_dict_other, args=(d, stop))
        p.start()
        k = [0]

        def once():
            d[k[0] % 100] = k[0]
            d.get(k[0] % 100)
            k[0] += 1

        try:
            return time_us(samples(15), 200, once)
        finally:
            stop.set()
            p.join()


def _listener_echo(path):
    from multiprocessing.connection import Client
    c = Client(path, authkey=b"bench")
    try:
        while True:
            c.send_bytes(c.recv_bytes())
    except EOFError:
        pass


def listener_ping_pong():
    """us per 64-byte round trip between a Listener and a Client over a Unix socket."""
    import os
    import tempfile
    from multiprocessing.connection import Listener
    path = os.path.join(tempfile.mkdtemp(), "bench.sock")
    with Listener(path, authkey=b"bench") as l:
        p = mp.get_context("fork").Process(target=_listener_echo, args=(path,))
        p.start()
        c = l.accept()
        msg = b"x" * 64

        def once():
            c.send_bytes(msg)
            c.recv_bytes()

        r = time_us(samples(15), 2000, once)
        c.close()
        p.join()
    return r


# ----- load: trickles, N->N, lock fairness, round trips beside CPU hogs (bench/src/load.rs) -----
# Each runs once per call: the Rust side interleaves its own samples with these, one each.


def _trickle_consumer(q, n, out):
    import resource
    q.get()  # the first message: start measuring
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    lat = []
    for _ in range(n - 1):
        sent = q.get()
        lat.append(time.clock_gettime_ns(time.CLOCK_MONOTONIC) - sent)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime - cpu0
    lat.sort()
    out.put((cpu * 1e6 / (n - 1), lat[len(lat) // 2] / 1e3, lat[int(len(lat) * 0.99)] / 1e3))


def _trickle(rate):
    """A producer putting one small message every 1/rate s for 1.5 s: the consumer's CPU time
    per message (us), and the delivery latency median and p99 (us)."""
    ctx = mp.get_context("fork")
    n = int(rate * 1.5)
    q, out = ctx.Queue(), ctx.Queue()
    c = ctx.Process(target=_trickle_consumer, args=(q, n, out))
    c.start()
    period = 1e9 / rate
    start = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 20_000_000
    for i in range(n):
        due = start + i * period
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if due > now:
            time.sleep((due - now) / 1e9)
        q.put(time.clock_gettime_ns(time.CLOCK_MONOTONIC))
    cpu, med, p99 = out.get()
    c.join()
    return {"cpu": cpu, "lat50": med, "lat99": p99}


def trickle_1000():
    return _trickle(1000)


def trickle_10000():
    return _trickle(10000)


def _n_to_n(k, size, n):
    ctx = mp.get_context("fork")
    q = ctx.Queue(1000)
    out = ctx.Queue()
    cs = [ctx.Process(target=_q_consumer, args=(q, out)) for _ in range(k)]
    for c in cs:
        c.start()
    ps = [ctx.Process(target=_q_producer, args=(q, size, n // k)) for _ in range(k)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    for _ in cs:
        q.put(None)
    r = [out.get() for _ in cs]
    for c in cs:
        c.join()
    got = [x for x in r if x[2] > 0]
    first = min(x[0] for x in got)
    last = max(x[1] for x in got)
    total = sum(x[2] for x in r)
    return (total - 1) / (last - first)


def nn_1():
    return _n_to_n(1, 64, 20000)


def nn_4():
    return _n_to_n(4, 64, 40000)


def nn_16():
    return _n_to_n(16, 64, 64000)


def nn_32():
    return _n_to_n(32, 64, 64000)


def _fair_worker(lock, go, stop, out):
    go.wait()
    k = 0
    while not stop.value:
        with lock:
            k += 1
    out.put(k)


def _lock_fair(procs):
    """procs processes taking one lock for 0.5 s: acquisitions per second in all, and the
    fewest acquisitions of one process over the most."""
    ctx = mp.get_context("fork")
    lock, go = ctx.Lock(), ctx.Event()
    stop = ctx.Value("i", 0, lock=False)
    out = ctx.Queue()
    ps = [ctx.Process(target=_fair_worker, args=(lock, go, stop, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    time.sleep(0.05)
    go.set()
    t = time.perf_counter()
    time.sleep(0.5)
    stop.value = 1
    el = time.perf_counter() - t
    counts = [out.get() for _ in ps]
    for p in ps:
        p.join()
    return {"rate": sum(counts) / el, "fair": min(counts) / max(counts)}


def lock_fair_2():
    return _lock_fair(2)


def lock_fair_4():
    return _lock_fair(4)


def lock_fair_16():
    return _lock_fair(16)


def _q_echo(a, b, n):
    for _ in range(n):
        b.put(a.get())


def hog_event(warm=0):
    """us per Event round trip (run while the Rust side keeps two CPU hogs busy), after
    `warm` untimed ones."""
    ctx = mp.get_context("fork")
    n = 1000
    a, b = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_pong, args=(a, b, warm + n))
    p.start()
    for _ in range(warm):
        a.set()
        b.wait()
        b.clear()
    t = time.perf_counter()
    for _ in range(n):
        a.set()
        b.wait()
        b.clear()
    el = time.perf_counter() - t
    p.join()
    return el * 1e6 / n


def hog_pipe(warm=0):
    """us per Pipe round trip of a small object, beside two CPU hogs."""
    return _pipe_ping_pong(True, 1000, warm)


def hog_queue(warm=0):
    """us per Queue request/reply round trip (two queues), beside two CPU hogs."""
    ctx = mp.get_context("fork")
    n = 1000
    a, b = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_q_echo, args=(a, b, warm + n))
    p.start()
    for _ in range(warm):
        a.put(12345)
        b.get()
    t = time.perf_counter()
    for _ in range(n):
        a.put(12345)
        b.get()
    el = time.perf_counter() - t
    p.join()
    return el * 1e6 / n


def _on_one_cpu(f):
    """f() with this process and the children it forks pinned to one CPU (the first it may
    use), so that every answer needs a context switch; the affinity is restored after."""
    was = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(was)})
    try:
        return f()
    finally:
        os.sched_setaffinity(0, was)


WARM = 50  # untimed round trips first: the child's start-up would run inside the timing


def cpu1_event():
    """us per Event round trip, both processes on one CPU."""
    return _on_one_cpu(lambda: hog_event(WARM))


def cpu1_pipe():
    """us per Pipe round trip of a small object, both processes on one CPU."""
    return _on_one_cpu(lambda: hog_pipe(WARM))


def cpu1_queue():
    """us per Queue request/reply round trip, both processes on one CPU."""
    return _on_one_cpu(lambda: hog_queue(WARM))


# ----- python: the Python package (bench/src/python.rs), run by target/pyenv's python -----
# Each case measures, alternating sample by sample so all see the same load: our package's
# context ("multiproc"), CPython's multiprocessing ("python"), and the reference
# ("faster_fifo", or "threading" for the lock). A side that cannot run (faster-fifo not
# installed) is left out; the result is a dict printed as "case.side<TAB>median".

SMALL = (12345, "hello")  # the "small object" of the python rows


def _py_sides(with_ff=True):
    """side -> (context for processes and primitives, or None for faster-fifo)."""
    sides = {}
    try:
        import multiproc
        sides["multiproc"] = multiproc.get_context("fork")
    except ImportError as e:
        print(f"multiproc not importable: {e}", file=sys.stderr)
    sides["python"] = mp.get_context("fork")
    if with_ff:
        try:
            import faster_fifo  # noqa: F401
            sides["faster_fifo"] = None
        except ImportError:
            print("faster-fifo not installed: no reference", file=sys.stderr)
    return sides


def _py_queue(side, ctx, maxsize, joinable=False):
    if ctx is not None:
        return ctx.JoinableQueue(maxsize) if joinable else ctx.Queue(maxsize)
    import faster_fifo
    return faster_fifo.Queue(max_size_bytes=1 << 20, maxsize=maxsize)


def _py_alternate(sides, n_samples, sample):
    """Runs sample(side, ctx) for every side, n_samples rounds, rotating the order each round;
    side -> median."""
    out = {k: [] for k in sides}
    names = list(sides)
    for i in range(n_samples):
        for k in names[i % len(names):] + names[:i % len(names)]:
            out[k].append(sample(k, sides[k]))
    return {k: statistics.median(v) for k, v in out.items()}


def _py_producer(q, n):
    for _ in range(n):
        q.put(SMALL)


def _py_1to1(side, ctx, n=50000):
    q = _py_queue(side, ctx, 1000)
    p = mp.get_context("fork").Process(target=_py_producer, args=(q, n)) if ctx is None \
        else ctx.Process(target=_py_producer, args=(q, n))
    p.start()
    q.get(timeout=60)
    t = time.perf_counter()
    for _ in range(n - 1):
        q.get(timeout=60)
    rate = (n - 1) / (time.perf_counter() - t)
    p.join()
    return rate


def py_queue_1to1():
    """messages/s of SMALL, one producer process to the consumer (this process)."""
    return _py_alternate(_py_sides(), samples(7), _py_1to1)


def _py_consumer(q, out):
    # As _q_consumer; ends at None.
    k = 0
    first = last = 0
    counted = 0
    while True:
        x = q.get(timeout=60)
        if x is None:
            break
        k += 1
        if k == 1:
            first = last = time.time()
            counted = 1
        elif k % 256 == 0:
            last = time.time()
            counted = k
    out.put((first, last, counted))


def _py_2to2(side, ctx, n=50000):
    pctx = ctx or mp.get_context("fork")
    q = _py_queue(side, ctx, 1000)
    out = pctx.Queue()
    cs = [pctx.Process(target=_py_consumer, args=(q, out)) for _ in range(2)]
    ps = [pctx.Process(target=_py_producer, args=(q, n // 2)) for _ in range(2)]
    for p in cs + ps:
        p.start()
    for p in ps:
        p.join()
    for _ in cs:
        q.put(None)
    r = [out.get(timeout=60) for _ in cs]
    for c in cs:
        c.join()
    got = [x for x in r if x[2] > 0]
    return (sum(x[2] for x in r) - 1) / (max(x[1] for x in got) - min(x[0] for x in got))


def py_queue_2to2():
    """messages/s of SMALL, 2 producer processes to 2 consumer processes on one queue."""
    return _py_alternate(_py_sides(), samples(7), _py_2to2)


def _py_echo_pipe(c, n):
    for _ in range(n):
        c.send(c.recv())


def _py_echo_queues(a, b, n):
    for _ in range(n):
        b.put(a.get(timeout=60))


def _py_round_trip(side, ctx, n=20000):
    if ctx is None:  # faster-fifo: a request queue and a reply queue
        a, b = _py_queue(side, None, 1000), _py_queue(side, None, 1000)
        p = mp.get_context("fork").Process(target=_py_echo_queues, args=(a, b, n))
        send, recv = a.put, lambda: b.get(timeout=60)
    else:
        a, b = ctx.Pipe()
        p = ctx.Process(target=_py_echo_pipe, args=(b, n))
        send, recv = a.send, a.recv
    p.start()
    t = time.perf_counter()
    for _ in range(n):
        send(SMALL)
        recv()
    el = time.perf_counter() - t
    p.join()
    return el * 1e6 / n


def py_pipe_round_trip():
    """us per send/recv round trip of SMALL through a Pipe to an echoing process (faster-fifo:
    through two of its queues)."""
    return _py_alternate(_py_sides(), samples(7), _py_round_trip)


def py_lock():
    """ns per acquire()+release() of a Lock, uncontended."""
    sides = _py_sides(with_ff=False)
    sides["threading"] = None
    n = 200_000

    def sample(side, ctx):
        lock = threading.Lock() if ctx is None else ctx.Lock()
        acquire, release = lock.acquire, lock.release
        t = time.perf_counter()
        for _ in range(n):
            acquire()
            release()
        return (time.perf_counter() - t) * 1e9 / n

    return _py_alternate(sides, samples(15), sample)


def _py_task_done(q):
    while True:
        x = q.get(timeout=60)
        q.task_done()
        if x is None:
            break


def py_joinable():
    """messages/s of SMALL put into a JoinableQueue and marked done by a consumer process,
    until join() returns."""
    n = 20000

    def sample(side, ctx):
        q = ctx.JoinableQueue(1000)
        c = ctx.Process(target=_py_task_done, args=(q,))
        c.start()
        q.put(SMALL)
        q.join()
        t = time.perf_counter()
        for _ in range(n):
            q.put(SMALL)
        q.join()
        rate = n / (time.perf_counter() - t)
        q.put(None)
        c.join()
        return rate

    return _py_alternate(_py_sides(with_ff=False), samples(7), sample)


CASES = {
    "lock_uncontended": lock_uncontended,
    "lock_contended": lock_contended,
    "event_ping_pong": event_ping_pong,
    "process_fork": process_fork,
    "process_spawn": process_spawn,
    "queue_1to1_8": queue_1to1_8,
    "queue_1to1_int8": queue_1to1_int8,
    "queue_ff_1to1_8": queue_ff_1to1_8,
    "queue_ff_1to1_1m": queue_ff_1to1_1m,
    "queue_1to1_64": queue_1to1_64,
    "queue_1to1_1m": queue_1to1_1m,
    "queue_2to2_64": queue_2to2_64,
    "joinable_64": joinable_64,
    "pipe_ping_pong_bytes": pipe_ping_pong_bytes,
    "pipe_ping_pong_obj": pipe_ping_pong_obj,
    "pipe_one_way_64": pipe_one_way_64,
    "pipe_one_way_obj": pipe_one_way_obj,
    "pipe_1m": pipe_1m,
    "pipe_1m_obj": pipe_1m_obj,
    "pool_map_trivial": pool_map_trivial,
    "pool_map_cpu_speedup": pool_map_cpu_speedup,
    "shm_write_read_1m": shm_write_read_1m,
    "listener_ping_pong": listener_ping_pong,
    "trickle_1000": trickle_1000,
    "trickle_10000": trickle_10000,
    "nn_1": nn_1,
    "nn_4": nn_4,
    "nn_16": nn_16,
    "nn_32": nn_32,
    "lock_fair_2": lock_fair_2,
    "lock_fair_4": lock_fair_4,
    "lock_fair_16": lock_fair_16,
    "hog_event": hog_event,
    "hog_pipe": hog_pipe,
    "hog_queue": hog_queue,
    "cpu1_event": cpu1_event,
    "cpu1_pipe": cpu1_pipe,
    "cpu1_queue": cpu1_queue,
    "dict_get_insert_2p": dict_get_insert_2p,
    "py_queue_1to1": py_queue_1to1,
    "py_queue_2to2": py_queue_2to2,
    "py_pipe_round_trip": py_pipe_round_trip,
    "py_lock": py_lock,
    "py_joinable": py_joinable,
}


def main():
    global QUICK
    args = sys.argv[1:]
    if "--quick" in args:
        QUICK = True
        args.remove("--quick")
    for name in args:
        fn = CASES.get(name)
        if fn is None:
            print(f"unknown case {name}", file=sys.stderr)
            continue
        try:
            r = fn()
            if isinstance(r, dict):  # several values of one run: "name.key"
                for k, v in r.items():
                    print(f"{name}.{k}\t{v}", flush=True)
            else:
                print(f"{name}\t{r}", flush=True)
        except Exception as e:  # a failing case must not hide the others
            print(f"case {name} failed: {e!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
