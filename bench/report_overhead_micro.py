"""Cost of one ``nsml.report(step=i, loss=..., acc=...)`` call on the platform, in microseconds.

Runs with NSML_SPOOL pointing at a fresh temporary directory, so report() takes its on-platform
path (journal + background flusher). Prints:

- the median and p99 of per-call times (each call timed alone; the timer's own cost, measured
  on an empty loop, is printed too and not subtracted);
- the mean over a tight untimed loop, flush included, which also charges the background
  thread's encoding and writing to the caller: the cost a training loop pays in total.

    python bench/report_overhead_micro.py [--calls 300000]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r'''
import sys, time
from time import perf_counter_ns
import nsml
from nsml.client import journal

calls = int(sys.argv[1])
report = nsml.report
for i in range(1000):  # warm up: first call opens the journal, starts the flusher
    report(step=i, loss=0.5, acc=0.9)

timer = []
for i in range(calls):
    t0 = perf_counter_ns(); t1 = perf_counter_ns()
    timer.append(t1 - t0)

per_call = []
append = per_call.append
for i in range(calls):
    loss = 1.0 / (i + 1)
    acc = i / calls
    t0 = perf_counter_ns()
    report(step=i, loss=loss, acc=acc)
    append(perf_counter_ns() - t0)

journal.flush()  # start the tight loop with nothing left over from the timed one
t0 = perf_counter_ns()
for i in range(calls):
    report(step=i, loss=1.0 / (i + 1), acc=i / calls)
journal.flush()
bulk = perf_counter_ns() - t0

per_call.sort(); timer.sort()
q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] / 1000
print(q(per_call, 0.5), q(per_call, 0.99), q(timer, 0.5), bulk / calls / 1000)
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--calls', type=int, default=300_000)
    parser.add_argument('--repeat', type=int, default=3, help='fresh processes; medians reported')
    args = parser.parse_args()

    load = os.getloadavg()[0]
    rows = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix='nsml-bench-') as spool:
            env = dict(os.environ, NSML_SPOOL=spool, NSML_IS_ON_NSML='1',
                       NSML_SESSION_NAME='bench/report/1',
                       PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
            out = subprocess.run([sys.executable, '-c', CHILD, str(args.calls)], env=env,
                                 check=True, capture_output=True, text=True).stdout
            lines = sum(1 for _ in open(os.path.join(spool, 'journal.ndjson'), 'rb'))
            expected = 1000 + 2 * args.calls
            if lines != expected:
                sys.exit(f'journal has {lines} lines, expected {expected}')
            rows.append([float(x) for x in out.split()])

    median, p99, timer, bulk = (statistics.median(col) for col in zip(*rows))
    print(f'nsml.report(step=i, loss=..., acc=...) on-platform, {args.calls} calls, '
          f'median of {args.repeat} processes, Python {sys.version.split()[0]}; '
          f'load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end')
    print(f'  per call   median {median:.2f} us   p99 {p99:.2f} us   (timer overhead {timer:.2f} us)')
    print(f'  tight loop mean {bulk:.2f} us per call, background encoding and write included')


if __name__ == '__main__':
    main()
