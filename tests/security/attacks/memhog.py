"""Allocates (and touches) far more memory than the session was given, in steps, up to a cap
so that it stops by itself where no limit holds it."""
import sys

step, cap = 32 << 20, int(sys.argv[1]) << 20
held = []
while len(held) * step < cap:
    held.append(b"\x01" * step)  # filled, so the pages are really there
    print(f"HOG {len(held) * step >> 20} MB", flush=True)
print(f"ATTACK-OK memory hog: {cap >> 20} MB allocated", flush=True)
