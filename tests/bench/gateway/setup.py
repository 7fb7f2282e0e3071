"""setup — loads users, follows, media and posts into a running flockd for
the gateway benchmarks, and writes one line per user:
"username user_id token media_id".

Usage: setup.py --port P --out FILE [--users N | --reed98 DIR]
                [--posts-per-user K] [--media] [--threads T]
With --reed98 the users are the nodes of socfb-Reed98 and every edge is a
mutual follow (the graph is undirected).
"""
import argparse
import http.client
import json
import os
import struct
import sys
import threading
import time
import zlib

# Retries of a request the node answered 503/429 (queue full).
BUSY_RETRIES_MAX = 600


def png_bytes(seed):
    w, h = 16, 16
    rows = []
    for y in range(h):
        rows.append(b"\x00" + b"".join(bytes(((x * 9 + seed) & 255, (y * 7) & 255, 40))
                                       for x in range(w)))
    raw = b"".join(rows)

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None, token=None, raw=None, ctype=None):
        headers = {}
        data = None
        if raw is not None:
            data, headers["Content-Type"] = raw, ctype
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = "Bearer " + token
        failures = 0
        for attempt in range(BUSY_RETRIES_MAX):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                failures += 1
                if failures > 3:
                    break
                continue
            if r.status in (429, 503):
                # A bounded queue (media processing, password hashing)
                # said "later": wait as told and retry.
                time.sleep(min(1.0, float(r.getheader("Retry-After") or 0.1)))
                continue
            return r.status, (json.loads(payload) if payload else None)
        raise SystemExit("setup: %s %s failed" % (method, path))


def parallel(n_threads, items, fn, port):
    errors = []

    def worker(part):
        c = Client(port)
        for it in part:
            try:
                fn(c, it)
            except SystemExit as e:
                errors.append(str(e))
                return
    threads = [threading.Thread(target=worker, args=(items[i::n_threads],))
               for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(errors[0])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--users", type=int, default=0)
    p.add_argument("--prefix", default="u")
    p.add_argument("--reed98")
    p.add_argument("--posts-per-user", type=int, default=0)
    p.add_argument("--media", action="store_true")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--star", action="store_true",
                   help="the first user follows every other user")
    p.add_argument("--author-posts", type=int, default=0,
                   help="posts by the first user only")
    p.add_argument("--posts-out", help="file for the first user's post ids")
    a = p.parse_args()

    edges = []
    if a.reed98:
        names = set()
        with open(os.path.join(a.reed98, "socfb-Reed98.edges")) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].isdigit():
                    u, v = int(parts[0]), int(parts[1])
                    edges.append((u, v))
                    names.update((u, v))
        ids = sorted(names)
    else:
        ids = list(range(1, a.users + 1))
    users = {}
    lock = threading.Lock()

    def signup(c, i):
        name = "%s%d" % (a.prefix, i)
        st, b = c.call("POST", "/v1/signup", {"username": name, "email": name + "@bench.test",
                                              "password": "bench password 1"})
        if st != 201:
            raise SystemExit("signup %s: %d %r" % (name, st, b))
        with lock:
            users[i] = [name, b["user_id"], b["token"], "0"]
    parallel(a.threads, ids, signup, a.port)

    if edges:
        pairs = [(u, v) for (u, v) in edges] + [(v, u) for (u, v) in edges]

        def follow(c, pv):
            u, v = pv
            st, b = c.call("POST", "/v1/users/%s/follow" % users[v][0], {"action": "follow"},
                           token=users[u][2])
            if st != 200:
                raise SystemExit("follow: %d %r" % (st, b))
        parallel(a.threads, pairs, follow, a.port)

    if a.star:
        others = ids[1:]

        def follow_one(c, v):
            st, b = c.call("POST", "/v1/users/%s/follow" % users[v][0], {"action": "follow"},
                           token=users[ids[0]][2])
            if st != 200:
                raise SystemExit("follow: %d %r" % (st, b))
        parallel(a.threads, others, follow_one, a.port)

    if a.media or a.posts_per_user or a.author_posts:
        def media(c, i):
            st, b = c.call("POST", "/v1/media", raw=png_bytes(i), ctype="image/png",
                           token=users[i][2])
            if st != 201:
                raise SystemExit("media: %d %r" % (st, b))
            users[i][3] = b["media_id"]
            for k in range(a.posts_per_user):
                st, b = c.call("POST", "/v1/posts", {"caption": "post %d #bench" % k,
                                                     "media_id": users[i][3]},
                               token=users[i][2])
                if st != 201:
                    raise SystemExit("post: %d %r" % (st, b))
        parallel(a.threads, ids, media, a.port)

    if a.author_posts:
        first = ids[0]
        post_ids = []

        def author_post(c, k):
            st, b = c.call("POST", "/v1/posts", {"caption": "author %d" % k,
                                                 "media_id": users[first][3]},
                           token=users[first][2])
            if st != 201:
                raise SystemExit("author post: %d %r" % (st, b))
            with lock:
                post_ids.append(b["post_id"])
        parallel(a.threads, list(range(a.author_posts)), author_post, a.port)
        if a.posts_out:
            with open(a.posts_out, "w") as f:
                f.write("\n".join(post_ids) + "\n")

    with open(a.out, "w") as f:
        for i in ids:
            f.write(" ".join(users[i]) + "\n")


if __name__ == "__main__":
    main()
