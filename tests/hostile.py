"""Helpers of the hostile-input tests: servers on 127.0.0.1 that accept a connection and then do not speak Dask
(silent, garbage, closing), and a record of files that must not change (sha256) or appear (leftovers)."""

import hashlib
import os
import socket
import threading
from pathlib import Path

GARBAGE = b"\x00\xffHELLO, this is not Dask\r\n" * 64

# the three ways a thing listening at SCHEDULER can fail to be a scheduler, and what the user is told
BEHAVIOURS = {"silent": "no answer", "garbage": "it answered, but not as a Dask scheduler",
              "closes": "the connection was closed by the other end"}


class HostileServer:
    """A TCP server thread on 127.0.0.1 that accepts every connection and then, by ``behaviour``: says nothing
    (``silent``, the connection kept open), sends bytes that are not Dask's protocol (``garbage``) or closes it at
    once (``closes``)."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.address = f"tcp://127.0.0.1:{self.socket.getsockname()[1]}"
        self.accepted, self._open, self._stop = 0, [], False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted += 1
            if self.behaviour == "garbage":
                try:
                    connection.sendall(GARBAGE)
                except OSError:
                    pass
                self._open.append(connection)
            elif self.behaviour == "closes":
                connection.close()
            else:
                self._open.append(connection)

    def close(self):
        self._stop = True
        self.socket.close()
        for connection in self._open:
            connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect_message(address, timeout, reason):
    """The exact message of a SCHEDULER that is not a reachable Dask scheduler."""
    return (f"Could not reach the Dask scheduler at {address} within {timeout:g} s ({reason}); no output was "
            f"written. Check SCHEDULER (e.g. tcp://10.0.0.5:8786) and that `dask scheduler` runs there, or leave it "
            f"empty to run in this process.")


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class Untouched:
    """Every file under ``folders`` at creation: ``check()`` asserts that none changed (sha256), none went away and
    nothing appeared (no output, no partial file, no sidecar) except ``allowed`` names."""

    def __init__(self, *folders):
        self.folders = [Path(folder) for folder in folders]
        self.before = self._state()

    def _state(self):
        state = {}
        for folder in self.folders:
            for root, _, names in os.walk(folder):
                for name in names:
                    path = Path(root) / name
                    if path.is_file():
                        state[str(path)] = sha256(path)
        return state

    def check(self, allowed=()):
        after = self._state()
        changed = [path for path in self.before if after.get(path) != self.before[path]]
        new = [path for path in after if path not in self.before and Path(path).name not in allowed]
        assert not changed, f"changed or removed: {changed}"
        assert not new, f"left behind: {new}"


def no_traceback(text):
    assert "Traceback" not in text and 'File "' not in text, text
