"""flocklib — helpers for flock's integration tests (real processes, loopback).

Each test script starts its own flockd on 127.0.0.1 with port 0 (the node
picks a free port and prints its URL), a temporary data directory, and
stops it before exiting. HTTP goes through http.client, WebSockets through
Debian's python3-websockets (run with /usr/bin/python3). Every wait is
bounded; a test that cannot finish fails instead of hanging.
"""
import argparse
import base64
import http.client
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

START_TIMEOUT_S = 20
REQUEST_TIMEOUT_S = 15


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    raise SystemExit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--flockd", required=True)
    return p.parse_args()


class Node:
    """One flockd process."""

    def __init__(self, flockd, data_dir=None, extra=(), env=None):
        self.flockd = flockd
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="flock-it-")
        self.extra = list(extra)
        self.env = env
        self.proc = None
        self.port = None
        self.log_lines = []

    def start(self):
        env = dict(os.environ)
        env["FLOCK_TEST"] = "1"
        if self.env:
            env.update(self.env)
        args = [self.flockd, "--listen", "127.0.0.1:0", "--data",
                self.data_dir, "--insecure-fast-passwords",
                "--workers", "2"] + self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env,
                                     text=True)
        url = None
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"flock listening on http://127\.0\.0\.1:(\d+)/", line)
            if m:
                url = m.group(0)
                self.port = int(m.group(1))
                break
        if self.port is None:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.kill()
            fail("flockd did not start: " + err[-2000:])
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        for line in self.proc.stderr:
            self.log_lines.append(line)
            if len(self.log_lines) > 5000:
                del self.log_lines[:1000]

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self):
        """SIGTERM; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                fail("flockd did not stop within 20 s of SIGTERM")
        return self.proc.returncode

    def cleanup(self):
        self.kill()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # ---- HTTP ------------------------------------------------------------

    def request(self, method, path, body=None, token=None, headers=None,
                raw=None, content_type=None, source=None):
        """Returns (status, headers dict lower-case, parsed body or bytes).
        source: a loopback address to connect from (another client IP)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=REQUEST_TIMEOUT_S,
                                          source_address=(source, 0) if source else None)
        h = dict(headers or {})
        data = None
        if raw is not None:
            data = raw
            if content_type:
                h["Content-Type"] = content_type
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = content_type or "application/json"
        if token:
            h["Authorization"] = "Bearer " + token
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            payload = resp.read()
        except (ConnectionError, http.client.HTTPException) as e:
            conn.close()
            return 0, {}, str(e)
        conn.close()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        ctype = hdrs.get("content-type", "")
        parsed = payload
        if "json" in ctype and payload:
            try:
                parsed = json.loads(payload)
            except ValueError:
                fail("%s %s: body is not JSON: %r" % (method, path, payload[:200]))
        return resp.status, hdrs, parsed

    def expect(self, status, method, path, **kw):
        st, hdrs, body = self.request(method, path, **kw)
        check(st == status, "%s %s: expected %d, got %d: %r" %
              (method, path, status, st, body if not isinstance(body, bytes) else body[:300]))
        check_security_headers(hdrs, "%s %s" % (method, path))
        if status >= 400:
            check_problem(hdrs, body, status, "%s %s" % (method, path))
        return hdrs, body

    def signup(self, username, password="correct horse battery"):
        _, body = self.expect(201, "POST", "/v1/signup",
                              body={"username": username,
                                    "email": username + "@example.com",
                                    "password": password})
        check(isinstance(body.get("user_id"), str), "user_id is a string")
        check(isinstance(body.get("token"), str), "signup returns a token")
        check(isinstance(body.get("expires_in"), int), "expires_in")
        return body["user_id"], body["token"]


def check_security_headers(hdrs, what):
    check(hdrs.get("x-content-type-options") == "nosniff", what + ": nosniff")
    check("x-frame-options" in hdrs, what + ": X-Frame-Options")
    check("content-security-policy" in hdrs, what + ": CSP")
    check("referrer-policy" in hdrs, what + ": Referrer-Policy")


def check_problem(hdrs, body, status, what):
    check(hdrs.get("content-type", "").startswith("application/problem+json"),
          what + ": problem+json content type, got " + hdrs.get("content-type", ""))
    check(isinstance(body, dict), what + ": problem body is an object")
    check(body.get("status") == status, what + ": problem status")
    check(isinstance(body.get("type"), str) and isinstance(body.get("title"), str),
          what + ": problem type and title")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def png_bytes(width=64, height=48, seed=0):
    """A valid RGB PNG made with the standard library."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            row += bytes(((x * 4 + seed) & 255, (y * 5 + seed) & 255, (x ^ y) & 255))
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def multipart(fields, files):
    """fields: {name: str}; files: {name: (filename, ctype, bytes)}."""
    boundary = "flockboundary%d" % int(time.time() * 1000)
    out = bytearray()
    for k, v in fields.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                % (boundary, k, v)).encode()
    for k, (fn, ct, data) in files.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                "Content-Type: %s\r\n\r\n" % (boundary, k, fn, ct)).encode()
        out += data + b"\r\n"
    out += ("--%s--\r\n" % boundary).encode()
    return bytes(out), "multipart/form-data; boundary=" + boundary


def wait_until(what, fn, timeout_s=15.0, interval_s=0.05):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval_s)
    fail("timed out waiting for " + what)


def metric(node, name, source=None):
    """The value of an unlabelled sample in /metrics, or None."""
    st, _, body = node.request("GET", "/metrics", source=source)
    if st != 200:
        return None
    for line in body.split(b"\n"):
        parts = line.split()
        if len(parts) == 2 and parts[0] == name.encode():
            return int(parts[1])
    return None


def run(main):
    """Runs main(args) with a hard deadline; cleans up nodes it registered."""
    args = parse_args()
    nodes = []
    try:
        main(args, nodes)
    finally:
        for n in nodes:
            n.cleanup()
    print("ok", flush=True)
