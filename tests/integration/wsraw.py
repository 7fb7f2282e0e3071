"""wsraw — a minimal WebSocket client over a raw socket, for tests that
need control the websockets library hides (a tiny receive buffer, a
reader that stops reading, invalid frames)."""
import json
import socket
import time


class RawStream:
    def __init__(self, port, token, since=None, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(10)
        self.s.connect(("127.0.0.1", port))
        path = "/v1/stream" + ("?since=%d" % since if since is not None else "")
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n"
                        % (path, token)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.s.recv(1)
            if not chunk:
                raise ConnectionError("closed during upgrade")
            buf += chunk
        self.status = int(buf.split(b"\r\n")[0].split()[1])
        self.buf = b""
        self.close_code = None
        self.closed = False

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.s.settimeout(max(0.01, deadline - time.time()))
            try:
                chunk = self.s.recv(65536)
            except (socket.timeout, BlockingIOError):
                return False
            except ConnectionResetError:
                self.closed = True
                return False
            if not chunk:
                self.closed = True
                return False
            self.buf += chunk
        return True

    def next_frame(self, timeout_s=10):
        """Returns (opcode, payload) or None on timeout/EOF."""
        deadline = time.time() + timeout_s
        if not self._need(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7f, 2
        if n == 126:
            if not self._need(4, deadline):
                return None
            n, off = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            if not self._need(10, deadline):
                return None
            n, off = int.from_bytes(self.buf[2:10], "big"), 10
        if not self._need(off + n, deadline):
            return None
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        op = b0 & 0x0f
        if op == 8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        return op, payload

    def events(self, timeout_s=3):
        """Reads text frames until quiet or closed; returns parsed events."""
        out = []
        while True:
            f = self.next_frame(timeout_s)
            if f is None:
                return out
            op, payload = f
            if op == 1:
                out.append(json.loads(payload))
            elif op == 8:
                return out

    def send_text(self, text):
        payload = text.encode()
        mask = b"\x11\x22\x33\x44"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        self.s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def close(self):
        self.s.close()
