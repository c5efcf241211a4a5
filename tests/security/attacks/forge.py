"""A hostile session that plants files in its spool for the supervisor and the server to trust
(--plant), runs attack families (--attacks, probes.py), then waits to be stopped.

- user.pid: the server's pid, so that killing "the session's process group" (nsml rm -f, a
  vanished supervisor) would kill the server instead;
- supervisor.pid: the server's pid too, so that killing a supervisor the server had not yet
  recorded (a restart mid-launch) would kill the server;
- output.log: a symbolic link to a root-only file, for the supervisor to ship as the log (and
  append its notes to);
- relaunch.json: a forged stage (a submit that "finished" without ever calling nsml.paused());
- prediction.txt: (relaunched as a submit) a link to the hidden labels' blob, for the supervisor
  to ship as this session's predictions: a perfect score, and the labels on the platform;
- repl.json: another session's nsml exec socket, so that `nsml exec` of this session would run
  code in that one;
- (relaunched as an infer session) infer.sock: a link to a Unix socket elsewhere on the host,
  with relaunch.json saying "serving", for the server to send the owner's requests there;
- (relaunched as an infer session) relaunch.json as a FIFO: whoever opens it to read how far
  the model got waits for a writer that never comes.
"""
import argparse
import json
import os
import sys
import time

import nsml
import probes

p = argparse.ArgumentParser()
p.add_argument("--plant", default="")
p.add_argument("--attacks", default="")
p.add_argument("--wait", type=float, default=0)
p.add_argument("--infer-wait", type=float, default=0)
p.add_argument("--mode", default="train")
p.add_argument("--pause", type=int, default=0)
p.add_argument("--iteration", default="0")
config = p.parse_args()
T = probes.T
SPOOL = probes.SPOOL
planted = [n for n in config.plant.split(",") if n]


def replace_with_link(path, target):
    try:
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)
        probes.say(f"PLANTED {path} -> {target}")
    except OSError as exc:
        probes.say(f"BLOCKED plant {path}: {exc}")


def write(path, text):
    try:
        if os.path.lexists(path):
            os.unlink(path)
        with open(path, "w") as f:
            f.write(text)
        probes.say(f"PLANTED {path}: {text[:80]}")
    except OSError as exc:
        probes.say(f"BLOCKED plant {path}: {exc}")


# The spool, and the folder above it (the run directory, where the platform keeps its own files).
folders = [SPOOL, os.path.dirname(SPOOL.rstrip("/"))]
if "user.pid" in planted:
    for folder in folders:
        write(os.path.join(folder, "user.pid"), str(T["server_pid"]))
if "supervisor.pid" in planted:
    for folder in folders:
        write(os.path.join(folder, "supervisor.pid"), str(T["server_pid"]))
if "output.log" in planted:
    for folder in folders:
        replace_with_link(os.path.join(folder, "output.log"), T["secret_path"])
if "relaunch" in planted:
    write(os.path.join(SPOOL, "relaunch.json"), json.dumps({"stage": "done", "predictions": "plain", "error": ""}))
if "repl" in planted:
    write(os.path.join(SPOOL, "repl.json"), json.dumps({"socket": T["victim_socket"], "pid": 1}))

if config.pause:  # relaunched: forge what nsml.paused() would have written, never call it
    if "prediction" in planted:
        replace_with_link(os.path.join(SPOOL, "prediction.txt"), T["label_blob"])
    if "infer-link" in planted:
        replace_with_link(os.path.join(SPOOL, "infer.sock"), T["trap_socket"])
        write(os.path.join(SPOOL, "relaunch.json"), json.dumps({"stage": "serving", "error": ""}))
    if "fifo-relaunch" in planted:
        try:
            if os.path.lexists(os.path.join(SPOOL, "relaunch.json")):
                os.unlink(os.path.join(SPOOL, "relaunch.json"))
            os.mkfifo(os.path.join(SPOOL, "relaunch.json"))
            probes.say("PLANTED relaunch.json as a FIFO")
        except OSError as exc:
            probes.say(f"BLOCKED plant a FIFO: {exc}")
    probes.say("FORGED-SUBMIT" if os.environ.get("NSML_RELAUNCH", "").startswith("submit") else "FORGED-RELAUNCH")
    deadline = time.monotonic() + config.infer_wait
    while time.monotonic() < deadline:
        time.sleep(0.2)
    sys.exit(0)

probes.run([n for n in config.attacks.split(",") if n])
nsml.bind(save=lambda folder: open(os.path.join(folder, "model"), "w").write("m"))
nsml.save("0")
print("FORGE-WAITING", flush=True)
deadline = time.monotonic() + config.wait
while time.monotonic() < deadline:
    time.sleep(0.2)
