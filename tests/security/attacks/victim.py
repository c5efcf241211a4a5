"""An ordinary session beside a hostile one: it keeps a private file in its working directory,
registers a scope for nsml exec, and must end normally (exit 0) whatever its neighbour tries.
It ends when the test drops `release` into its working directory (or after a bounded wait)."""
import json
import os
import time

import nsml

targets = json.load(open("targets.json"))
with open("private.txt", "w") as f:
    f.write(targets["private_text"])
nsml.report(step=0, alive=1, scope=locals())
print("VICTIM-READY", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists("release") and time.monotonic() < deadline:
    time.sleep(0.1)
print("VICTIM-DONE", "released" if os.path.exists("release") else "by its own deadline", flush=True)
