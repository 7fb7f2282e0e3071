"""media — uploads, pre-signed URLs, multipart posts and image serving.

POST /v1/media with raw bytes and with multipart; non-images are 415;
POST /v1/media/uploads hands out a signed URL that takes one PUT without
a token (a second is 409, an altered or expired one 403); the media turns
ready and its variants are served from /media/{hash}/{variant} with a
strong ETag, immutable caching and 304 on If-None-Match; later reads
come from the gateway's media cache and must be byte for byte the same
response (headers and body), also when pipelined on one keep-alive
connection and for HEAD; a variant too big for the cache streams from
disk; a 25 MB upload is answered as usual while other
requests are served; a multipart POST /v1/posts makes a post in one
request.
"""
import random
import socket
import struct
import threading
import time
import urllib.parse
import zlib

from flocklib import (Node, check, check_security_headers, multipart,
                      png_bytes, run, wait_until)


def noise_png(width, height):
    """An RGB PNG of noise: its JPEG variants are as big as they get."""
    rnd = random.Random(7)
    raw = b"".join(b"\0" + rnd.randbytes(width * 3) for _ in range(height))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def raw_exchange(port, requests, body, count):
    """Sends the requests pipelined on one connection; returns the bytes
    read until body has arrived count times or the peer closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"".join(requests))
    data = b""
    while data.count(body) < count:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def main(args, nodes):
    node = Node(args.flockd, extra=["--upload-url-ttl", "2"]).start()
    nodes.append(node)
    _, alice = node.signup("alice")

    _, raw = node.expect(201, "POST", "/v1/media", raw=png_bytes(seed=1),
                         content_type="image/png", token=alice)
    body, ctype = multipart({}, {"media": ("x.png", "image/png", png_bytes(seed=2))})
    _, mp = node.expect(201, "POST", "/v1/media", raw=body, content_type=ctype, token=alice)
    check(mp["status"] == "processing", "multipart upload processing")
    node.expect(415, "POST", "/v1/media", raw=b"hello", content_type="text/plain", token=alice)
    node.expect(415, "POST", "/v1/media", raw=b"not an image at all",
                content_type="image/png", token=alice)
    body, ctype = multipart({}, {"other": ("x.png", "image/png", png_bytes())})
    node.expect(400, "POST", "/v1/media", raw=body, content_type=ctype, token=alice)

    # Pre-signed upload: one PUT, no token.
    _, res = node.expect(201, "POST", "/v1/media/uploads", token=alice)
    check(res.get("upload_url") and res.get("expires_in") == 2, "reserve: %r" % res)
    url = urllib.parse.urlsplit(res["upload_url"])
    target = url.path + "?" + url.query
    tampered = target.replace("user=", "user=9")
    node.expect(403, "PUT", tampered, raw=png_bytes(seed=4), content_type="image/png")
    _, put = node.expect(201, "PUT", target, raw=png_bytes(seed=4), content_type="image/png")
    check(put["media_id"] == res["media_id"], "PUT fills the reserved item")
    node.expect(409, "PUT", target, raw=png_bytes(seed=4), content_type="image/png")
    _, res2 = node.expect(201, "POST", "/v1/media/uploads", token=alice)
    time.sleep(2.5)
    u2 = urllib.parse.urlsplit(res2["upload_url"])
    node.expect(403, "PUT", u2.path + "?" + u2.query, raw=png_bytes(), content_type="image/png")

    # Processing finishes; variants are served immutable with ETags.
    def ready():
        _, m = node.expect(200, "GET", "/v1/media/%s" % raw["media_id"], token=alice)
        return m if m["status"] in ("ready", "failed") else None
    m = wait_until("media ready", ready, timeout_s=30)
    check(m["status"] == "ready", "media processed: %r" % m)
    for name in ("thumb", "small", "medium", "large"):
        vurl = urllib.parse.urlsplit(m["variants"][name]).path
        st, h, img = node.request("GET", vurl)
        check(st == 200, "variant %s served (%d)" % (name, st))
        check(h["content-type"].startswith("image/"), "image content type")
        check(int(h["content-length"]) == len(img) and len(img) > 0, "content length")
        check(h["cache-control"] == "public, max-age=31536000, immutable", "immutable")
        etag = h.get("etag", "")
        check(etag.startswith('"') and etag.endswith('"'), "strong ETag: %r" % etag)
        st, h2, empty = node.request("GET", vurl, headers={"If-None-Match": etag})
        check(st == 304 and empty == b"", "304 on If-None-Match (%d)" % st)
        check(h2.get("etag") == etag, "304 carries the ETag")
        # Served again (from the cache now): the same response.
        st, h3, img3 = node.request("GET", vurl)
        check(st == 200 and img3 == img, "cached %s: same bytes" % name)
        check(h3 == h, "cached %s: same headers: %r vs %r" % (name, h3, h))
        check_security_headers(h3, "cached " + name)
        st, h4, empty = node.request("HEAD", vurl)
        check(st == 200 and empty == b"" and h4.get("etag") == etag,
              "HEAD %s (%d)" % (name, st))
        check(int(h4["content-length"]) == len(img), "HEAD length")
        # Pipelined on one connection, then an API route after them.
        one = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % vurl).encode()
        data = raw_exchange(node.port, [one, one, one], img, 3)
        check(data.count(b"HTTP/1.1 200 OK") == 3 and data.count(img) == 3,
              "three pipelined reads of %s" % name)
    # A variant larger than the cache takes (a noisy photo's 1080-wide
    # large) streams from disk, whole and the same every time.
    _, noisy = node.expect(201, "POST", "/v1/media", raw=noise_png(1400, 1000),
                           content_type="image/png", token=alice)

    def noisy_ready():
        _, m = node.expect(200, "GET", "/v1/media/%s" % noisy["media_id"], token=alice)
        return m if m["status"] in ("ready", "failed") else None
    m = wait_until("noisy media ready", noisy_ready, timeout_s=60)
    check(m["status"] == "ready", "noisy media processed: %r" % m)
    vurl = urllib.parse.urlsplit(m["variants"]["large"]).path
    st, h, img = node.request("GET", vurl)
    check(st == 200 and len(img) > 256 * 1024, "large variant over the cache's file cap: %d bytes" % len(img))
    check(int(h["content-length"]) == len(img), "large: content length")
    st, h2, img2 = node.request("GET", vurl)
    check(st == 200 and img2 == img and h2 == h, "large: same response again")

    st, _, metrics = node.request("GET", "/metrics")
    check(st == 200 and b"flock_media_cache_hits_total " in metrics,
          "media cache counters in /metrics")
    node.expect(404, "GET", "/media/0000/thumb")
    node.expect(404, "GET", "/media/%s/huge" % ("a" * 64))

    # A big upload (the probe reads the header; the rest is padding) is
    # hashed and stored off the event loop: other requests are answered
    # while it is, and its own answer is the usual one.
    big = png_bytes(seed=9) + bytes(25 * 1000 * 1000)
    result = {}

    def upload():
        result["answer"] = node.request("POST", "/v1/media", raw=big,
                                        content_type="image/png", token=alice)
    uploader = threading.Thread(target=upload)
    uploader.start()
    while uploader.is_alive():
        st, _, _ = node.request("GET", "/healthz")
        check(st == 200, "healthz while a big upload is stored (%d)" % st)
    uploader.join()
    st, _, answer = result["answer"]
    check(st == 201 and answer.get("status") == "processing",
          "big upload: %d %r" % (st, answer))

    # One-shot multipart post.
    body, ctype = multipart({"caption": "one shot #multipart"},
                            {"media": ("p.png", "image/png", png_bytes(seed=5))})
    _, p = node.expect(201, "POST", "/v1/posts", raw=body, content_type=ctype, token=alice)
    check(p["caption"] == "one shot #multipart" and "multipart" in p["tags"], "post: %r" % p)
    check(p["media"]["media_id"], "post has its media")


if __name__ == "__main__":
    run(main)
