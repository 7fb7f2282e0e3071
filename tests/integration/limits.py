"""limits — rate limits, idempotency, connection caps, token expiry.

Per-IP signup and login buckets (lowered by flags) answer 429 with
Retry-After, RateLimit-Policy and RateLimit; the domain's per-user like
bucket answers 429 with Retry-After; an Idempotency-Key replays the first
response for the same body and is 422 for another body; a client address
past its connection cap is refused at accept and admitted again when one
of its sockets closes; a token past its expiry is 401. The node serves
from four event loops (--gateway-loops 4): each connection lands on any
of them, so the per-IP buckets and the connection cap hold across loops,
/metrics sums every loop's counters, and a node with three loops stops
cleanly.
"""
import socket
import time

from flocklib import Node, check, metric, png_bytes, run, wait_until


def main(args, nodes):
    node = Node(args.flockd, extra=["--rate-signup", "3/60", "--rate-login", "4/60",
                                    "--rate-likes", "2/60",
                                    "--connections-per-ip", "6",
                                    "--gateway-loops", "4"]).start()
    nodes.append(node)
    _, alice = node.signup("alice")
    node.signup("bob")
    _, carol = node.signup("carol")
    h, p = node.expect(429, "POST", "/v1/signup",
                       body={"username": "dave", "email": "d@x.io", "password": "long enough pw"})
    check(int(h.get("retry-after", "0")) >= 1, "Retry-After on 429: %r" % h)
    check(h.get("ratelimit-policy") == "3;w=60", "RateLimit-Policy: %r" % h.get("ratelimit-policy"))
    check(h.get("ratelimit", "").startswith("limit=3, remaining=0, reset="),
          "RateLimit: %r" % h.get("ratelimit"))
    for i in range(4):
        h, _ = node.expect(200, "POST", "/v1/login",
                           body={"username": "alice", "password": "correct horse battery"})
        check(h.get("ratelimit-policy") == "4;w=60", "login policy header")
    h, _ = node.expect(429, "POST", "/v1/login",
                       body={"username": "alice", "password": "correct horse battery"})
    check(int(h.get("retry-after", "0")) >= 1, "login Retry-After")

    # The domain's per-user bucket: 2 likes per minute.
    _, m = node.expect(201, "POST", "/v1/media", raw=png_bytes(), content_type="image/png",
                       token=alice)
    _, post = node.expect(201, "POST", "/v1/posts", token=alice,
                          body={"caption": "rate me", "media_id": m["media_id"]})
    # Idempotency: replay, then another body under the same key.
    key = {"Idempotency-Key": "post-once-123"}
    body = {"caption": "only once", "media_id": m["media_id"]}
    _, first = node.expect(201, "POST", "/v1/posts", token=alice, body=body, headers=key)
    _, again = node.expect(201, "POST", "/v1/posts", token=alice, body=body, headers=key)
    check(first["post_id"] == again["post_id"], "replay returns the first post")
    node.expect(422, "POST", "/v1/posts", token=alice, headers=key,
                body={"caption": "something else", "media_id": m["media_id"]})
    _, ups = node.expect(200, "GET", "/v1/users/alice/posts", token=alice)
    check(sum(1 for x in ups["items"] if x["caption"] == "only once") == 1,
          "the replayed post exists once")
    node.expect(400, "POST", "/v1/posts", token=alice, body=body,
                headers={"Idempotency-Key": "bad key with spaces"})

    # Connection cap: 6 per address; the 7th is refused at accept. The
    # node's own count is watched from another client address (its cap is
    # its own), so the 7th is sent only once all 6 are accepted, whichever
    # loops took them, and the freed slot is used only once its close has
    # been seen: no sleep stands in for either.
    other = "127.0.0.2"
    # Every earlier request closed its socket: once the node has seen
    # those closes, the gauge counts only the asking connection.
    wait_until("earlier connections' closes seen",
               lambda: metric(node, "flock_connections_open", other) == 1)
    base = 1
    held = [socket.create_connection(("127.0.0.1", node.port), timeout=5) for _ in range(6)]
    wait_until("six held connections accepted",
               lambda: metric(node, "flock_connections_open", other) == base + 6)
    extra = socket.create_connection(("127.0.0.1", node.port), timeout=5)
    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        got = extra.recv(100)
    except (ConnectionResetError, socket.timeout):
        got = b""
    check(got == b"", "7th connection refused, got %r" % got)
    extra.close()
    held.pop().close()
    wait_until("a held connection's close seen",
               lambda: metric(node, "flock_connections_open", other) == base + 5)
    node.expect(200, "GET", "/healthz")
    for s in held:
        s.close()
    wait_until("every held connection's close seen",
               lambda: metric(node, "flock_connections_open", other) == base)
    st, _, metrics = node.request("GET", "/metrics")
    check(b"flock_connections_refused_total 1\n" in metrics,
          "the refusal counted once: %r" % metrics[-2000:])
    # Every loop's requests summed: the signups, logins and the rest.
    signups = [l for l in metrics.split(b"\n")
               if l.startswith(b'flock_http_requests_total{route="/v1/signup"')]
    check(sum(int(l.split()[-1]) for l in signups) == 4,
          "four signups counted over the loops: %r" % signups)

    # Expiry: a node whose tokens live one second.
    short = Node(args.flockd, extra=["--token-ttl", "1", "--gateway-loops", "3"]).start()
    nodes.append(short)
    _, tok = short.signup("erin")
    short.expect(200, "GET", "/v1/users/erin", token=tok)
    time.sleep(2.2)
    _, p = short.expect(401, "GET", "/v1/users/erin", token=tok)
    check("expired" in p.get("detail", ""), "expired token detail: %r" % p)
    check(short.stop() == 0, "short node stops cleanly")

    path = "/v1/posts/%s/like" % post["post_id"]
    limited = None
    for i in range(6):
        st, h, b = node.request("POST", path, token=carol,
                                body={"action": "like" if i % 2 == 0 else "unlike"})
        if st == 429:
            limited = (h, b)
            break
        check(st == 200, "like/unlike: %d %r" % (st, b))
    check(limited is not None, "the per-user like bucket trips")
    check(int(limited[0].get("retry-after", "0")) >= 1,
          "domain 429 has Retry-After: %r" % limited[0])
    check(limited[1].get("status") == 429, "domain 429 is problem+json")


if __name__ == "__main__":
    run(main)
