"""Attacks a hostile session tries on the platform, run from inside real sessions.

Standard library only (it runs in the session's interpreter, before anything is installed).
The test that starts the session writes `targets.json` beside this file with what an attacker
could learn or guess: the NSML home's path, the server's port and pid, other sessions' pids and
folders, paths of root-owned files; and, so that the script can *recognise* a secret when it
finds one without being given it, the sha256 and size of each secret (the owner's token, the
hidden labels, a root-only file, another session's private file).

Every attempt prints one line:

    ATTACK-OK <what>: <detail>    it got through (the secret's bytes follow, to be exfiltrated)
    BLOCKED <what>: <error>       it did not
    NOTE <what>: <detail>         information for the reader, neither

and whatever an attack obtains is also copied into the working directory (`loot/`), which the
platform ships back to the owner as the session's output files: the test then looks for the
secret's bytes in the logs and the outputs, not only for the markers. Every family ends with
`DONE <family>`, so a script that died half-way cannot pass for one that was blocked.

The families live in steal.py (credentials, the network, the hidden labels) and escape.py
(privilege, other processes); this module holds what they share.
"""

import hashlib
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
T = json.load(open(os.path.join(HERE, "targets.json")))
SPOOL = os.environ.get("NSML_SPOOL") or "/run/nsml"
DATA = os.environ.get("NSML_DATASET_PATH") or ""
WHERE = os.environ.get("NSML_RELAUNCH") or "train"  # train, submit, submit_test, infer
SCOPED = re.compile(rb"nsml-s\.[0-9]+\.[0-9]+\.[0-9a-f]{64}")
TOKENISH = re.compile(rb"[A-Za-z0-9_\-]{32,64}")
REPORT: list[str] = []  # every line printed, for an infer session to hand back as its output
_loot = [0]


def say(line: str) -> None:
    REPORT.append(line)
    print(line, flush=True)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ok(what: str, detail: str, data: bytes = b"") -> None:
    """An attack got through: say so, and exfiltrate what it got (log and output files)."""
    say(f"ATTACK-OK {what}: {detail}")
    if data:
        say("LOOT " + data[:4096].decode("utf-8", "replace"))
        try:
            os.makedirs("loot", exist_ok=True)
            _loot[0] += 1
            with open(os.path.join("loot", str(_loot[0])), "wb") as f:
                f.write(data[:1 << 20])
        except OSError:
            pass


def blocked(what: str, why) -> None:
    say(f"BLOCKED {what}: {why}")


def note(what: str, detail) -> None:
    say(f"NOTE {what}: {detail}")


def read(path: str, limit: int = 1 << 20) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


# -- recognising secrets ---------------------------------------------------------------------
SECRETS = {}  # sha256 -> name, for files found whole
for _name in ("label", "secret", "private", "rootfile"):
    if T.get(f"{_name}_sha"):
        SECRETS[T[f"{_name}_sha"]] = _name
SIZES = {T[f"{n}_size"] for n in ("label", "secret", "private") if T.get(f"{n}_size")}
FOUND_TOKENS: dict[bytes, str] = {}  # candidate token -> where it was seen


def recognise(data: bytes, where: str) -> None:
    """Report a whole secret file, the owner's token or a scoped token inside `data`."""
    name = SECRETS.get(sha(data))
    if name and name != "rootfile":
        ok(f"read the {name}", where, data)
    scan_tokens(data, where)


def scan_tokens(data: bytes, where: str) -> None:
    for found in SCOPED.findall(data):
        if found not in FOUND_TOKENS:
            FOUND_TOKENS[found] = where
            ok("found a session-scoped token", where, found)
    for found in TOKENISH.findall(data):
        if sha(found) == T.get("token_sha") and found not in FOUND_TOKENS:
            FOUND_TOKENS[found] = where
            ok("found the owner's token", where, found)
        elif len(FOUND_TOKENS) < 400:
            FOUND_TOKENS.setdefault(found, where)


def look_at_file(path: str, where: str = "") -> bool:
    """Read one file if we may; recognise what is in it. True if it could be read."""
    try:
        data = read(path)
    except OSError:
        return False
    recognise(data, where or path)
    return True



def other_roots() -> list[int]:
    """Visible processes whose root is not ours (one of each): a way into their filesystem."""
    try:
        ours = os.stat("/")
    except OSError:
        return []
    seen, out = {(ours.st_dev, ours.st_ino)}, []
    for pid in pids():
        try:
            st = os.stat(f"/proc/{pid}/root")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            out.append(pid)
    return out


def lines(path: str) -> list[str]:
    try:
        return read(path).decode().splitlines()
    except OSError:
        return []


def pids() -> list[int]:
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())


def run(names) -> str:
    """Run the named families (each guarded: one failing never hides the others)."""
    import escape
    import steal

    FAMILIES = {"token": steal.family_token, "network": steal.family_network, "labels": steal.family_labels,
                "privilege": escape.family_privilege, "processes": escape.family_processes}
    note("where", f"{WHERE} uid={os.getuid()} pid={os.getpid()} cwd={os.getcwd()} spool={SPOOL} data={DATA}")
    for name in names:
        try:
            FAMILIES[name]()
        except Exception as exc:  # noqa: BLE001 - the family's DONE line will be missing
            say(f"CRASHED {name}: {type(exc).__name__}: {exc}")
    return "\n".join(REPORT)
