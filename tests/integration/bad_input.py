"""bad_input — every error is problem+json with the right status.

Malformed JSON, wrong types, unknown fields (no mass assignment),
oversized bodies (413 at the cap, not before), unknown routes (404),
wrong methods (405 with Allow), missing, forged, expired and alg-none
tokens (401), another user's post (403), the stream without or with a
bad token (401 before the upgrade), binary and invalid UTF-8 frames
(1003, 1007), plus /healthz, /readyz, /metrics, the web page and HEAD;
a first line that is not HTTP (400 problem+json, not lws's HTML).
"""
import asyncio
import json
import socket
import time

import websockets

from flocklib import (Node, b64url, b64url_decode, check, check_problem,
                      check_security_headers, fail, run)


def forged_tokens(token):
    h, c, s = token.split(".")
    claims = json.loads(b64url_decode(c))
    other = dict(claims, sub=str(int(claims["sub"]) + 1))
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    hs_header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    forged_claims = b64url(json.dumps(other).encode())
    return {
        "altered claims": "%s.%s.%s" % (h, forged_claims, s),
        "alg none": "%s.%s." % (none_header, c),
        "alg none forged": "%s.%s." % (none_header, forged_claims),
        "HS256 header": "%s.%s.%s" % (hs_header, c, s),
        "truncated signature": "%s.%s.%s" % (h, c, s[:-4]),
        "garbage": "not-a-token",
        "two parts": "%s.%s" % (h, c),
    }


async def ws_status(port, headers=None, query=""):
    uri = "ws://127.0.0.1:%d/v1/stream%s" % (port, query)
    try:
        ws = await websockets.connect(uri, extra_headers=headers or {},
                                      open_timeout=10, ping_interval=None)
    except websockets.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    return 101


async def ws_close_code(port, token, send):
    uri = "ws://127.0.0.1:%d/v1/stream" % port
    ws = await websockets.connect(uri, extra_headers={"Authorization": "Bearer " + token},
                                  open_timeout=10, ping_interval=None)
    await send(ws)
    try:
        await asyncio.wait_for(ws.wait_closed(), 10)
    except asyncio.TimeoutError:
        fail("server did not close")
    return ws.close_code


def raw_invalid_utf8_frame(port, token):
    """Sends a masked text frame with invalid UTF-8 over a raw socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    req = ("GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n" % token)
    s.sendall(req.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        check(chunk, "upgrade answered")
        buf += chunk
    check(b" 101 " in buf.split(b"\r\n")[0], "upgraded: %r" % buf[:100])
    payload = b"\xff\xfe\xfd"
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    data = buf.split(b"\r\n\r\n", 1)[1]
    deadline = time.time() + 10
    while time.time() < deadline:
        if len(data) >= 4 and data[0] & 0x0f == 8:
            break
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    check(len(data) >= 4 and data[0] & 0x0f == 8, "a close frame came back: %r" % data[:20])
    return int.from_bytes(data[2:4], "big")


def main(args, nodes):
    node = Node(args.flockd, extra=["--json-body-max", "4096"]).start()
    nodes.append(node)
    _, alice = node.signup("alice")
    _, bob = node.signup("bob")

    # Unknown routes and methods.
    node.expect(404, "GET", "/v1/nothing-here", token=alice)
    node.expect(404, "GET", "/nope")
    node.expect(404, "GET", "/static/../../etc/passwd")
    h, _ = node.expect(405, "GET", "/v1/signup")
    check(h.get("allow") == "POST", "405 says Allow: POST, got %r" % h.get("allow"))
    node.expect(405, "PUT", "/v1/feed", token=alice)

    # Malformed JSON, wrong types, unknown fields, wrong media type.
    node.expect(400, "POST", "/v1/login", raw=b"{\"username\":", content_type="application/json")
    node.expect(400, "POST", "/v1/login", raw=b"[1,2]", content_type="application/json")
    node.expect(400, "POST", "/v1/login", body={"username": 5, "password": "x"})
    node.expect(400, "POST", "/v1/signup", body={"username": "carol", "email": "c@x.io",
                                                  "password": "long enough pw", "admin": True})
    node.expect(400, "PATCH", "/v1/users/me", token=alice, body={"followers_count": 1000000})
    node.expect(400, "PATCH", "/v1/users/me", token=alice, body={"user_id": "1"})
    node.expect(400, "PATCH", "/v1/users/me", token=alice, body={"bio": 42})
    node.expect(400, "POST", "/v1/users/bob/follow", token=alice, body={"action": "stalk"})
    node.expect(415, "POST", "/v1/login", raw=b"username=a", content_type="application/x-www-form-urlencoded")
    node.expect(400, "GET", "/v1/feed?limit=zero", token=alice)
    node.expect(400, "GET", "/v1/search?q=", token=alice)
    node.expect(400, "GET", "/v1/search?q=a&type=planets", token=alice)
    node.expect(400, "POST", "/v1/signup", body={"username": "Bad Name!", "email": "b@x.io",
                                                  "password": "long enough pw"})
    node.expect(409, "POST", "/v1/signup", body={"username": "alice", "email": "a2@x.io",
                                                  "password": "long enough pw"})
    node.expect(401, "POST", "/v1/login", body={"username": "alice", "password": "wrong password"})

    # Body caps: exactly the cap is read (and judged on content), one more is 413.
    pad = 4096 - len(json.dumps({"bio": ""}).encode())
    at_cap = json.dumps({"bio": "x" * pad}).encode()
    check(len(at_cap) == 4096, "at-cap body is 4096 bytes")
    st, h, b = node.request("PATCH", "/v1/users/me", raw=at_cap,
                            content_type="application/json", token=alice)
    check(st == 400, "a 4096-byte body is read, then refused for its bio (%d)" % st)
    check(b.get("status") == 400, "problem for long bio")
    over = json.dumps({"bio": "x" * (pad + 1)}).encode()
    node.expect(413, "PATCH", "/v1/users/me", raw=over, content_type="application/json", token=alice)
    # An upload announced past 30 MB is refused from its headers alone.
    status, head = announce_body(node.port, "POST", "/v1/media", "image/png",
                                 30 * 1000 * 1000 + 1, alice)
    check(status == 413, "30 MB + 1 upload: 413, got %d" % status)
    check("application/problem+json" in head.lower(), "413 is problem+json")

    # Tokens: missing, forged, alg none, another key's.
    h, _ = node.expect(401, "GET", "/v1/feed")
    check(h.get("www-authenticate", "").startswith("Bearer"), "WWW-Authenticate")
    node.expect(401, "GET", "/v1/feed", headers={"Authorization": "Basic YTpi"})
    for what, tok in forged_tokens(alice).items():
        st, h, b = node.request("GET", "/v1/feed", token=tok)
        check(st == 401, "%s token: expected 401, got %d" % (what, st))
        check_problem(h, b, 401, what)

    # Another user's post: 403; missing: 404.
    _, m = node.expect(201, "POST", "/v1/posts", token=alice,
                       body={"caption": "mine", "media_id": upload_id(node, alice)})
    node.expect(403, "DELETE", "/v1/posts/%s" % m["post_id"], token=bob)
    node.expect(404, "DELETE", "/v1/posts/123456789", token=bob)
    node.expect(404, "GET", "/v1/posts/not-a-number", token=bob)
    _, c = node.expect(201, "POST", "/v1/posts/%s/comments" % m["post_id"], token=alice,
                       body={"text": "first"})
    node.expect(403, "DELETE", "/v1/posts/%s/comments/%s" % (m["post_id"], c["comment_id"]),
                token=bob)
    node.expect(400, "POST", "/v1/posts/%s/comments" % m["post_id"], token=bob,
                body={"text": "y" * 2201})

    # The stream: refused before the upgrade without a good token.
    async def streams():
        check(await ws_status(node.port) == 401, "stream without token: 401")
        check(await ws_status(node.port, query="?access_token=bogus") == 401,
              "stream with a bad token: 401")
        for what, tok in forged_tokens(bob).items():
            check(await ws_status(node.port, {"Authorization": "Bearer " + tok}) == 401,
                  "stream with %s token: 401" % what)
        check(await ws_status(node.port, {"Authorization": "Bearer " + bob}) == 101,
              "stream with bob's token: 101")
        check(await ws_status(node.port, {"Authorization": "Bearer " + bob}, "?since=x") == 400,
              "stream with a bad since: 400")
        code = await ws_close_code(node.port, bob, lambda ws: ws.send(b"\x00\x01"))
        check(code == 1003, "binary frame closes with 1003, got %r" % code)
    asyncio.run(asyncio.wait_for(streams(), 60))
    code = raw_invalid_utf8_frame(node.port, bob)
    check(code == 1007, "invalid UTF-8 closes with 1007, got %r" % code)

    # Operations endpoints, the web page, HEAD.
    node.expect(200, "GET", "/healthz")
    node.expect(200, "GET", "/readyz")
    st, h, body = node.request("GET", "/metrics")
    check(st == 200 and h["content-type"].startswith("text/plain"), "metrics")
    text = body.decode()
    for name in ("flock_http_requests_total{route=\"/v1/feed\",status=\"401\"}",
                 "flock_http_request_duration_seconds_bucket",
                 "flock_connections_open", "flock_actors_active",
                 "flock_process_resident_memory_bytes", "flock_journal_fsyncs_total",
                 "flock_journal_fsync_seconds_bucket{le=\"+Inf\"}"):
        check(name in text, "metrics has " + name)
    st, h, body = node.request("GET", "/")
    check(st == 200 and h["content-type"].startswith("text/html"), "GET / serves the page")
    check_security_headers(h, "GET /")
    st, h, body = node.request("GET", "/static/app.js")
    check(st == 200 and "javascript" in h["content-type"], "static js: %d %r" % (st, h.get("content-type")))
    st, h, body = node.request("HEAD", "/healthz")
    check(st == 200 and body == b"" and int(h["content-length"]) > 0, "HEAD")

    # A first line that is not HTTP (an unknown method) is a problem+json
    # 400 too, not the HTML page libwebsockets writes, and the connection
    # closes after it.
    status, hdrs, body = raw_request(node.port, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
    check(status == 400, "unknown method: %d" % status)
    check_security_headers(hdrs, "unknown method")
    check_problem(hdrs, json.loads(body), 400, "unknown method")
    check(hdrs.get("connection") == "close", "unknown method closes")
    node.expect(200, "GET", "/healthz")

    # A client that asks to close after the answer gets the answer and then
    # the end of the stream, also for answers the domain gives later
    # (written outside the request's own callback).
    for what, req in (
            ("login", b"POST /v1/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 48\r\n\r\n"
                      b"{\"username\":\"alice\",\"password\":\"wrong password\"}"),
            ("feed", ("GET /v1/feed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Authorization: Bearer %s\r\n\r\n" % alice).encode()),
            ("healthz", b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")):
        try:
            status, hdrs, body = raw_request(node.port, req)
        except socket.timeout:
            fail("%s with Connection: close: the answer came but the "
                 "connection stayed open" % what)
        check(status in (200, 401), "%s with Connection: close: %d" % (what, status))


def announce_body(port, method, path, ctype, length, token):
    """Sends only the headers of a large body; returns (status, head)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
               "Content-Length: %d\r\nAuthorization: Bearer %s\r\n\r\n"
               % (method, path, ctype, length, token)).encode())
    s.sendall(b"\0" * 65536)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    line = data.split(b"\r\n", 1)[0].decode()
    return int(line.split()[1]), data.decode(errors="replace")


def raw_request(port, data):
    """Sends data, reads until the peer closes; (status, headers, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        hdrs[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), hdrs, body


def upload_id(node, token):
    from flocklib import png_bytes
    _, b = node.expect(201, "POST", "/v1/media", raw=png_bytes(seed=3),
                       content_type="image/png", token=token)
    return b["media_id"]


if __name__ == "__main__":
    run(main)
