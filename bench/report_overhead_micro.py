"""Cost of one ``nsml.report()`` call on the platform, in microseconds.

Times two calls, each in its own fresh processes:

- ``report(step=i, loss=..., acc=...)`` (two values and a step);
- ``report(step=i, a=..., b=..., c=...)`` (three values and a step).

Runs with NSML_SPOOL pointing at a fresh temporary directory, so report() takes its on-platform
path (journal + background flusher). Prints, for each call:

- the median, p90, p99 and p99.9 of per-call times (each call timed alone; the timer's own cost,
  measured on an empty loop, is printed too and not subtracted), as the median over the
  processes and, below it, their range;
- the mean over a tight untimed loop, flush included, which also charges the background
  thread's encoding and writing to the caller: the cost a training loop pays in total;
- the load average (1 min) before and after, since the figures are only comparable at a similar
  load.

    python bench/report_overhead_micro.py [--calls 300000] [--repeat 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import journal_reports  # noqa: E402

CHILD = r'''
import sys
from array import array
from time import perf_counter_ns
import nsml
from nsml.client import journal

calls, values = int(sys.argv[1]), int(sys.argv[2])
report = nsml.report
for i in range(1000):  # warm up: first call opens the journal, starts the flusher
    report(step=i, loss=0.5, acc=0.9)

# Times go into arrays of C integers: a list would keep an int object per call, and the fresh
# memory those take (a page fault every hundred calls or so) would be charged to report().
timer = array('q', bytes(8 * calls))
for i in range(calls):
    t0 = perf_counter_ns(); t1 = perf_counter_ns()
    timer[i] = t1 - t0

per_call = array('q', bytes(8 * calls))
if values == 2:
    for i in range(calls):
        loss = 1.0 / (i + 1)
        acc = i / calls
        t0 = perf_counter_ns()
        report(step=i, loss=loss, acc=acc)
        per_call[i] = perf_counter_ns() - t0
else:
    for i in range(calls):
        a = 1.0 / (i + 1)
        b = i / calls
        c = a * b
        t0 = perf_counter_ns()
        report(step=i, a=a, b=b, c=c)
        per_call[i] = perf_counter_ns() - t0

journal.flush()  # start the tight loop with nothing left over from the timed one
t0 = perf_counter_ns()
if values == 2:
    for i in range(calls):
        report(step=i, loss=1.0 / (i + 1), acc=i / calls)
else:
    for i in range(calls):
        report(step=i, a=1.0 / (i + 1), b=i / calls, c=0.5)
journal.flush()
bulk = perf_counter_ns() - t0

per_call = sorted(per_call); timer = sorted(timer)
q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] / 1000
print(q(per_call, 0.5), q(per_call, 0.9), q(per_call, 0.99), q(per_call, 0.999),
      bulk / calls / 1000, q(timer, 0.5))
'''

CALLS = {2: 'report(step=i, loss=..., acc=...)', 3: 'report(step=i, a=..., b=..., c=...)'}
COLUMNS = ('median', 'p90', 'p99', 'p99.9', 'tight loop')


def run_child(calls, values):
    with tempfile.TemporaryDirectory(prefix='nsml-bench-') as spool:
        env = dict(os.environ, NSML_SPOOL=spool, NSML_IS_ON_NSML='1',
                   NSML_SESSION_NAME='bench/report/1',
                   PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
        out = subprocess.run([sys.executable, '-c', CHILD, str(calls), str(values)], env=env,
                             check=True, capture_output=True, text=True).stdout
        with open(os.path.join(spool, 'journal.ndjson'), 'rb') as f:
            reports = journal_reports(f.read())
        expected = 1000 + 2 * calls
        if reports != expected:
            sys.exit(f'journal holds {reports} reports, expected {expected}')
        return [float(x) for x in out.split()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--calls', type=int, default=300_000)
    parser.add_argument('--repeat', type=int, default=3, help='fresh processes per call form')
    args = parser.parse_args()

    load = os.getloadavg()[0]
    rows = {values: [] for values in CALLS}
    for _ in range(args.repeat):
        for values in CALLS:  # interleaved, so a change in load touches both alike
            rows[values].append(run_child(args.calls, values))

    print(f'nsml.report() on-platform, {args.calls} calls per process, {args.repeat} processes '
          f'each, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load average '
          f'{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end')
    print(f'  {"us per call":38}' + ''.join(f'{c:>12}' for c in COLUMNS))
    timers = []
    for values, name in CALLS.items():
        cols = list(zip(*rows[values]))
        timers += cols[-1]
        print(f'  {name:38}' + ''.join(f'{statistics.median(c):12.2f}' for c in cols[:-1]))
        print(f'  {"  range over processes":38}'
              + ''.join(f'{f"{min(c):.2f}-{max(c):.2f}":>12}' for c in cols[:-1]))
    print(f'  timer overhead {statistics.median(timers):.2f} us (not subtracted); the tight loop is '
          'the mean with the background encoding and write included')


if __name__ == '__main__':
    main()
