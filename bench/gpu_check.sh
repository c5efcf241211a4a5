#!/usr/bin/env bash
# GPU checks of the scheduler, for a machine WITH NVIDIA GPUs (a driver, nvidia-smi, PyTorch
# with CUDA). From the repository root, after `pip install -e ".[test]" nvidia-ml-py`:
#
#     bash bench/gpu_check.sh
#
# Uses $PYTHON, else the first of `python`, `python3` on PATH that imports nsml, pynvml and
# httpx; otherwise makes a virtualenv ($GPU_CHECK_VENV, default ${TMPDIR:-/tmp}/nsml-gpu-check-venv; system
# site packages kept, for a system torch) and installs the package into it. Starts its own
# server on a temporary NSML_HOME (sandbox "auto": bubblewrap where it runs), with
# NSML_ZOMBIE_AFTER=20, and checks (sessions: -g 1 -c 1 --memory 6G):
#
#   1. NVML discovery: pynvml's GPUs, and nsml.scheduler.inventory.this_machine() sees the same;
#   2. two sessions with -g 1: each has CUDA_VISIBLE_DEVICES = its gpu_ids, torch sees exactly 1
#      device, the two are different GPUs (ids and CUDA UUIDs) and each one's CUDA device is the
#      NVML GPU of its id; in the sandbox only its own /dev/nvidiaN is there;
#   3. a PyTorch session trains on CUDA for ~20 s and reports a metric (nsml.report);
#   4. usage sampling: GET /api/web/sessions/NAME/info has usage.gpus readings for its GPU, busy;
#   5. a session holding a GPU idle is flagged a zombie (`nsml ps -j` `zombie` field, `nsml ps`);
#   6. release: after the sessions ended, /api/resources shows every GPU free.
#
# Prints PASS/FAIL/SKIP per check and a summary; exits 1 on any FAIL. About 2-3 minutes.

set -u
cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
START=$(date +%s)

# -- results ---------------------------------------------------------------------------------
PASSED=0 FAILED=0 SKIPPED=0
SUMMARY=()
pass() { echo "PASS  $1"; SUMMARY+=("PASS  $1"); PASSED=$((PASSED + 1)); }
fail() { echo "FAIL  $1${2:+ -- $2}"; SUMMARY+=("FAIL  $1"); FAILED=$((FAILED + 1)); }
skip() { echo "SKIP  $1${2:+ -- $2}"; SUMMARY+=("SKIP  $1"); SKIPPED=$((SKIPPED + 1)); }
note() { echo "      $*"; }
# check NAME DETAIL-ON-FAILURE COMMAND...: PASS when the command succeeds
check() { local name=$1 detail=$2; shift 2; if "$@"; then pass "$name"; else fail "$name" "$detail"; fi; }
finish() {
    echo
    echo "== summary ($(($(date +%s) - START)) s): $PASSED passed, $FAILED failed, $SKIPPED skipped"
    printf '   %s\n' "${SUMMARY[@]}"
    if [ "$FAILED" -gt 0 ]; then
        if [ -n "${NSML_HOME:-}" ] && [ -f "$NSML_HOME/server.log" ]; then
            echo "   server log (KEEP=1 keeps $NSML_HOME):"
            tail -20 "$NSML_HOME/server.log" | sed 's/^/   | /'
        fi
        exit 1
    fi
    exit 0
}

# -- interpreter -----------------------------------------------------------------------------
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for candidate in python python3; do
        PY=$(command -v "$candidate") && "$PY" -c 'import nsml, pynvml, httpx' 2>/dev/null && break
        PY=
    done
    if [ -z "$PY" ]; then
        VENV=${GPU_CHECK_VENV:-${TMPDIR:-/tmp}/nsml-gpu-check-venv}
        echo "== neither python nor python3 imports nsml, pynvml and httpx: installing them into $VENV"
        { [ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"; } &&
            "$VENV/bin/pip" install -q -e ".[test]" nvidia-ml-py || { echo "FAIL  venv setup"; exit 1; }
        PY=$VENV/bin/python
    fi
fi
echo "== python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
nsml() { "$PY" -m nsml "$@"; }

# -- 1. NVML discovery -----------------------------------------------------------------------
echo "== host devices: $(ls /dev/nvidia* 2>/dev/null | tr '\n' ' ')"
[ -e /dev/nvidia-uvm ] || note "no /dev/nvidia-uvm yet (made by the first CUDA program): sessions started before it exists get none in their sandbox"
command -v nvidia-smi >/dev/null && nvidia-smi -L | sed 's/^/      /'
DISCOVERY=$("$PY" - <<'EOF' 2>&1
import pynvml
from nsml.scheduler.inventory import this_machine
pynvml.nvmlInit()
nvml = []
for i in range(pynvml.nvmlDeviceGetCount()):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    name, uuid = pynvml.nvmlDeviceGetName(h), pynvml.nvmlDeviceGetUUID(h)
    name, uuid = (x.decode() if isinstance(x, bytes) else x for x in (name, uuid))
    nvml.append((i, name, pynvml.nvmlDeviceGetMemoryInfo(h).total, uuid))
pynvml.nvmlShutdown()
print(f"driver: NVML sees {len(nvml)} GPU(s)")
for g in nvml:
    print(f"  nvml {g[0]}: {g[1]}, {g[2] >> 20} MiB, {g[3]}")
nodes = this_machine()
for n in nodes:
    print(f"node {n.name}: {n.cpus:g} CPUs, {n.memory >> 30} GiB, {len(n.gpus)} GPU(s)")
    for g in n.gpus:
        print(f"  nsml {g.index}: {g.model}, {g.memory >> 20} MiB, {g.uuid}")
mine = [(g.index, g.model, g.memory, g.uuid) for g in nodes[0].gpus]
print("COUNT", len(nvml))
print("MATCH" if len(nodes) == 1 and mine == nvml and nvml else "MISMATCH")
EOF
)
echo "$DISCOVERY" | grep -v '^COUNT\|^MATCH\|^MISMATCH' | sed 's/^/      /'
NGPUS=$(echo "$DISCOVERY" | awk '$1 == "COUNT" {print $2}')
NGPUS=${NGPUS:-0}
check "NVML discovery: this_machine() lists the $NGPUS GPU(s) NVML finds (index, model, memory, UUID)" \
    "see above" grep -qx MATCH <<<"$DISCOVERY"
if [ "$NGPUS" -lt 1 ]; then
    fail "a GPU to check" "NVML found none"; finish
fi
TORCH=$("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())' 2>&1 | tail -1)
note "torch: $TORCH"

# -- server ----------------------------------------------------------------------------------
TMP=$(mktemp -d -t nsml-gpu-check.XXXXXX)
export NSML_HOME=$TMP/home
mkdir -p "$NSML_HOME" "$TMP/projects"
for k in $(env | awk -F= '/^NSML_/ && $1 != "NSML_HOME" {print $1}'); do unset "$k"; done
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
SERVER_PID=
cleanup() {
    for f in "$NSML_HOME"/runs/*/user.pid "$NSML_HOME"/runs/*/spool/user.pid; do [ -f "$f" ] && kill -KILL -- "-$(cat "$f")" 2>/dev/null; done
    [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && sleep 1
    # the supervisors of this home only (each leads a process group of its own)
    for pid in $(pgrep -f "nsml.scheduler.supervisor $NSML_HOME/" 2>/dev/null); do kill -KILL -- "-$pid" 2>/dev/null; done
    if [ -n "${KEEP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
NSML_ZOMBIE_AFTER=20 "$PY" -m nsml.server.main --home "$NSML_HOME" --embedded --port 0 >"$NSML_HOME/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do [ -f "$NSML_HOME/server.json" ] && break; sleep 0.2; done
if [ ! -f "$NSML_HOME/server.json" ]; then
    fail "server start" "$(tail -5 "$NSML_HOME/server.log")"; finish
fi
SANDBOX=$(grep -m1 'Sandbox: \|no session sandbox' "$NSML_HOME/server.log")
SANDBOXED=0
grep -q '^Sandbox: bwrap' <<<"$SANDBOX" && SANDBOXED=1
echo "== server pid $SERVER_PID; $SANDBOX"

# api PATH: GET on the server, the JSON body on stdout
api() {
    "$PY" - "$1" <<'EOF'
import json, os, sys, httpx
home = os.environ["NSML_HOME"]
url = json.load(open(f"{home}/server.json"))["url"]
token = open(f"{home}/token").read().strip()
r = httpx.get(url + sys.argv[1], headers={"Authorization": f"Bearer {token}"}, timeout=30)
r.raise_for_status()
print(r.text)
EOF
}
# field EXPR: EXPR of the JSON on stdin, bound to `d` (the environment is `env`)
field() { "$PY" -c "import json, os, sys; env = os.environ; d = json.load(sys.stdin); print($1)"; }
project() { mkdir -p "$TMP/projects/$1" && cat >"$TMP/projects/$1/main.py" && echo "$TMP/projects/$1"; }
# start DIR ARGS...: `nsml run ARGS` in DIR; the session's name on stdout
start() { local dir=$1; shift; (cd "$dir" && nsml run "$@") | awk '/^Session /{print $2}'; }
RES="-g 1 -c 1 --memory 6G"  # each session: one GPU, one CPU, 6G (two fit a small machine)
need() { for s in "$@"; do [ -n "$s" ] || { fail "nsml run" "no session name (see above)"; finish; }; done; }
wait_end() { timeout "$2" "$PY" -m nsml logs -f "$1" >/dev/null 2>&1; }
status_of() { api "/api/sessions/$1" | field 'd["status"]'; }

# -- 2. two sessions with -g 1 ---------------------------------------------------------------
SEE=$(project see <<'EOF'
import glob, os, subprocess, sys, time
cvd = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
print("CVD", cvd)
print("DEVS", " ".join(sorted(glob.glob("/dev/nvidia*"))) or "-")
try:
    import torch
    n = torch.cuda.device_count()
    print("COUNT", n)
    if n:
        p = torch.cuda.get_device_properties(0)
        print("NAME", p.name)
        print("UUID", str(getattr(p, "uuid", "")) or "-")
    else:  # diagnosis: is the one GPU there under another ordinal?
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                             env=env, capture_output=True, text=True).stdout.strip()
        print("DIAG without CUDA_VISIBLE_DEVICES torch sees", out or "?", "device(s)")
except Exception as exc:
    print("COUNT error", type(exc).__name__, exc)
sys.stdout.flush()
time.sleep(10)  # the two sessions overlap
EOF
)
S1=$(start "$SEE" $RES)
S2=$(start "$SEE" $RES)
need "$S1" "$S2"
echo "== sessions $S1 and $S2 ($RES each)"
OK1=0; OK2=0
wait_end "$S1" 120 && OK1=1
wait_end "$S2" 120 && OK2=1
check "two -g 1 sessions exited 0" "$S1 $(status_of "$S1"), $S2 $(status_of "$S2")" test $OK1$OK2 = 11
L1=$(nsml logs "$S1"); L2=$(nsml logs "$S2")
LIMITS=$("$PY" -c 'import glob, json, sys; print(", ".join(sorted({json.load(open(f))["limits"]["backend"]["name"] for f in glob.glob(sys.argv[1] + "/runs/*/spec.json")})))' "$NSML_HOME" 2>/dev/null)
note "session limits enforced by: ${LIMITS:-?} (CUDA needs cgroups: an address-space rlimit breaks cuInit)"
J1=$(api "/api/sessions/$S1"); J2=$(api "/api/sessions/$S2")
G1=$(field 'd["gpu_ids"]' <<<"$J1"); G2=$(field 'd["gpu_ids"]' <<<"$J2")
for i in 1 2; do
    eval "L=\$L$i G=\$G$i S=\$S$i"
    echo "$L" | sed "s|^|      $S: |"
    check "$S: CUDA_VISIBLE_DEVICES is its gpu_ids ($G)" "log says $(grep '^CVD' <<<"$L")" grep -qx "CVD $G" <<<"$L"
    check "$S: torch.cuda.device_count() is 1" "$(grep '^COUNT\|^DIAG' <<<"$L" | tr '\n' ' ')" grep -qx "COUNT 1" <<<"$L"
    DEVS=$(awk '$1 == "DEVS"' <<<"$L")
    if [ "$SANDBOXED" = 1 ]; then
        NODES=$(tr ' ' '\n' <<<"${DEVS#DEVS }" | grep -E '^/dev/nvidia[0-9]+$' | tr '\n' ' ')
        check "$S: in the sandbox /dev/nvidia$G is its only GPU device" "$DEVS" test "$NODES" = "/dev/nvidia$G "
    else
        skip "$S: device nodes in the sandbox" "no sandbox on this server ($SANDBOX); $DEVS"
    fi
    # the CUDA device the session got is the NVML GPU of its id (the sampler reads NVML by id)
    U=$(awk '$1 == "UUID" {print $2}' <<<"$L")
    if [ -z "$U" ] || [ "$U" = "-" ]; then
        skip "$S: its CUDA device is NVML GPU $G" "this torch has no device UUID"
    else
        NV=$("$PY" -c "import pynvml; pynvml.nvmlInit(); u = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex($G)); print((u.decode() if isinstance(u, bytes) else u).lower())")
        check "$S: its CUDA device is NVML GPU $G" "torch UUID $U, NVML GPU $G is $NV" \
            test "${NV#gpu-}" = "$(tr "[:upper:]" "[:lower:]" <<<"${U#GPU-}")"
    fi
done
if [ "$NGPUS" -ge 2 ]; then
    U1=$(awk '$1 == "UUID" {print $2}' <<<"$L1"); U2=$(awk '$1 == "UUID" {print $2}' <<<"$L2")
    check "the two sessions got different GPUs (ids $G1 / $G2, UUIDs differ)" "UUIDs $U1 / $U2" \
        test "$G1" != "$G2" -a "$U1" != "$U2"
    OVERLAP=$(J1=$J1 J2=$J2 "$PY" -c "import json, os; a, b = (json.loads(os.environ[k]) for k in ('J1', 'J2')); print(int(b['started'] < a['ended'] and a['started'] < b['ended']))")
    check "... and ran at the same time" "they ran one after the other" test "$OVERLAP" = 1
else
    skip "the two sessions got different GPUs" "one GPU here: they ran one after the other"
fi

# -- 3-5. training, usage sampling, zombie ---------------------------------------------------
TRAIN=$(project train <<'EOF'
import time
import torch
import nsml
dev = torch.device("cuda")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(1024, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 10)).to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x, y = torch.randn(8192, 1024, device=dev), torch.randint(0, 10, (8192,), device=dev)
end, step, first = time.time() + 20, 0, None
while time.time() < end or step < 100:  # ~20 s of work, so that the 5-second sampler sees it
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 25 == 0:
        value = loss.item()
        first = value if first is None else first
        nsml.report(step=step, loss=value)
    step += 1
last = loss.item()
nsml.report(summary=True, step=step, loss=last)
print(f"TRAINED {step} steps on {torch.cuda.get_device_name(0)}: loss {first:.4f} -> {last:.4f}", flush=True)
print("LEARNED", int(last < first))
EOF
)
ZOMBIE=$(project zombie <<'EOF'
import time
import torch
x = torch.zeros(1, device="cuda")  # a CUDA context on the GPU, then nothing
torch.cuda.synchronize()
print("HOLDING", torch.cuda.get_device_name(0), flush=True)
time.sleep(150)
EOF
)
T=$(start "$TRAIN" $RES)
Z=$(start "$ZOMBIE" $RES)
need "$T" "$Z"
echo "== training $T, idle holder $Z"
OKT=0; wait_end "$T" 150 && OKT=1
LT=$(nsml logs "$T")
echo "$LT" | tail -3 | sed "s|^|      $T: |"
check "PyTorch session trained on CUDA and exited 0" "status $(status_of "$T")" test "$OKT" = 1
JT=$(api "/api/sessions/$T")
LOSS=$(field 'd["last_values"].get("loss", d["summary"].get("loss"))' <<<"$JT")
check "it reported a metric (loss = $LOSS)" "last_values ${JT:0:300}" test "$LOSS" != None
check "... and the loss went down" "$(grep TRAINED <<<"$LT")" grep -qx "LEARNED 1" <<<"$LT"
GT=$(field 'd["gpu_ids"]' <<<"$JT")
USAGE=$(api "/api/web/sessions/$T/info" | GT=$GT field '(lambda u: f"{len(u)} {max([x or 0 for x in u], default=0):g}")(d["usage"]["gpus"].get(env["GT"], {}).get("util", []))')
note "usage samples of GPU $GT: $USAGE (count, max util %)"
check "usage sampling: /api/web/sessions/$T/info has usage.gpus readings of GPU $GT" "got: $USAGE" test "${USAGE%% *}" -ge 1
check "... showing it busy (max util > 0)" "got: $USAGE" test "${USAGE##* }" != 0

# the idle holder: flagged once it held its GPU at 0 % for NSML_ZOMBIE_AFTER=20 s
# (flagged ~20-30 s after its start: NSML_ZOMBIE_AFTER=20 s of 0 % samples, one every 5 s)
FLAG=
for _ in $(seq 90); do [ "$(status_of "$Z")" = queued ] || break; sleep 1; done  # one GPU: after the training
for _ in $(seq 20); do
    [ "$(status_of "$Z")" = running ] || break
    FLAG=$(nsml ps -j | Z=$Z field 'next((s["zombie"] for s in d if s["name"] == env["Z"]), [])')
    [ "$FLAG" != "[]" ] && break
    sleep 3
done
GZ=$(api "/api/sessions/$Z" | field 'd["gpu_ids"]')
AGE=$(api "/api/sessions/$Z" | field 'int(__import__("time").time() - (d["started"] or 0))')
check "idle GPU holder $Z flagged zombie in nsml ps -j after ${AGE}s (zombie = [$GZ])" "zombie field: ${FLAG:-none}, status $(status_of "$Z")" \
    test "$FLAG" = "[$GZ]"
ps_line() { COLUMNS=250 "$PY" -m nsml ps | grep -F "$Z"; }
check "... and nsml ps says so" "its line: $(ps_line)" grep -q 'zombie' <<<"$(ps_line)"
nsml stop "$Z" >/dev/null 2>&1
wait_end "$Z" 60

# -- 6. release ------------------------------------------------------------------------------
for _ in $(seq 20); do
    LEFT=$(api "/api/sessions?all=false" | field 'len(d)')
    [ "$LEFT" = 0 ] && break
    sleep 0.5
done
HELD=$(api /api/resources | field "' '.join(f\"{n['name']}:{g['index']}={g['holder']}\" for n in d['nodes'] for g in n['gpus'] if g['holder']) or 'none'")
check "release: every GPU free in /api/resources once the sessions ended" "held: $HELD" test "$HELD" = none

finish
