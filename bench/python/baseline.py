"""Python multiprocessing baseline for the multiproc benchmark.

Usage: python3 baseline.py [--quick] CASE...
Prints one line per case: "name<TAB>median", in the unit of the matching Rust row
(us per operation, or messages/s, MB/s... as the case says). Each case is a function
below, registered in CASES; add yours next to the Rust rows you measure.
"""
import multiprocessing as mp
import statistics
import sys
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


CASES = {
    "process_fork": process_fork,
    "process_spawn": process_spawn,
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
            print(f"{name}\t{fn()}", flush=True)
        except Exception as e:  # a failing case must not hide the others
            print(f"case {name} failed: {e!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
