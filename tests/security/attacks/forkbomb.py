"""A fork bomb with a cap, so that it stops by itself even where no limit holds it: it makes
up to CAP processes (each a `sleep` carrying MARK on its command line, for the test to find any
left behind), keeps forking for HOLD seconds as a real bomb would, then fails."""
import os
import sys
import time

cap, hold, mark = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]


def spawn():
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/sleep", ["sleep", mark])
        finally:
            os._exit(0)
    return pid


made, error = 0, None
while made < cap:
    try:
        spawn()
        made += 1
    except OSError as exc:
        error = exc
        break
print(f"BOMB {made} processes", flush=True)
if error is None:
    print(f"ATTACK-OK fork bomb: {made} processes, no limit stopped it", flush=True)
else:
    print(f"BLOCKED fork bomb: stopped after {made} processes: {error}", flush=True)
print("BOMB-HOLDING", flush=True)
deadline = time.monotonic() + hold
while time.monotonic() < deadline:
    try:
        spawn()
        made += 1
    except OSError:
        time.sleep(0.01)
print(f"DONE bomb {made}", flush=True)
sys.exit(1)
