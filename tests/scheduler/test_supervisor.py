"""The supervisor's journal shipping, against a stand-in for the server's offset bookkeeping."""

import json

from nsml.scheduler.supervisor import Shipper


class FakeResponse:
    def __init__(self, status_code, body):
        self.status_code, self.body = status_code, body

    def json(self):
        return self.body


class RecordingShipper(Shipper):
    """Answers journal posts the way the server does: bytes it already has are skipped."""

    def __init__(self, spec, server_has):
        super().__init__(spec)
        self.server_has = server_has
        self.stored = b""
        self.uploaded = []

    def _post(self, path, tar=None, **kwargs):
        offset = int(path.split("offset=")[1])
        data = kwargs["content"]
        if offset > self.server_has:
            return FakeResponse(409, {"offset": self.server_has})
        new = data[self.server_has - offset:]
        self.stored += new
        self.server_has += len(new)
        return FakeResponse(200, {"offset": self.server_has})

    def _upload_checkpoint(self, line):
        self.uploaded.append(line["name"])


def journal(tmp_path):
    lines = [{"k": "m", "w": 1.0, "step": 1, "s": False, "v": {"a": 1}},
             {"k": "c", "w": 2.0, "name": "1", "dir": "checkpoints/x"},
             {"k": "m", "w": 3.0, "step": 2, "s": False, "v": {"a": 2}}]
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    (tmp_path / "journal.ndjson").write_bytes(data)
    spec = {"spool": str(tmp_path), "session": "a/b/1", "token": "t", "server_url": "http://x"}
    return spec, data


def test_a_server_ahead_of_the_supervisor_gets_no_bytes_twice(tmp_path):
    spec, data = journal(tmp_path)
    shipper = RecordingShipper(spec, server_has=len(data))  # it has all: sent before, answer lost
    shipper.ship_journal()
    assert shipper.stored == b"" and shipper.journal_offset == len(data)
    assert shipper.uploaded == []


def test_a_server_behind_the_supervisor_gets_the_bytes_it_lacks(tmp_path):
    spec, data = journal(tmp_path)
    shipper = RecordingShipper(spec, server_has=0)
    shipper.journal_offset = data.index(b"\n") + 1  # the server lost the first line: 409
    shipper.ship_journal()
    assert shipper.stored == data and shipper.journal_offset == len(data)
    assert shipper.uploaded == ["1"]
