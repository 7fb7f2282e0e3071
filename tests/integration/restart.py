"""restart — acknowledged writes survive kill -9; SIGTERM stops cleanly.

A writer thread posts, likes and comments as fast as it can and records
every write the node acknowledged (2xx). The node is killed with SIGKILL
mid-stream and restarted on the same data directory: every acknowledged
post, like and comment is there, tokens issued before still verify (the
key file persisted), and the live stream resumes. Then SIGTERM while
requests are in flight: the node exits 0 and the next start finds every
acknowledged write again.
"""
import threading
import time

from flocklib import Node, check, png_bytes, run

WRITE_SECONDS = 2.0


def writer(node, alice, bob, media_id, acked, stop):
    i = 0
    while not stop.is_set():
        st, _, p = node.request("POST", "/v1/posts", token=alice,
                                body={"caption": "post %d" % i, "media_id": media_id})
        if st == 201:
            acked["posts"].append(p["post_id"])
            st, _, c = node.request("POST", "/v1/posts/%s/comments" % p["post_id"],
                                    token=bob, body={"text": "c%d" % i})
            if st == 201:
                acked["comments"].append((p["post_id"], c["comment_id"]))
            st, _, _ = node.request("POST", "/v1/posts/%s/like" % p["post_id"],
                                    token=bob, body={"action": "like"})
            if st == 200:
                acked["likes"].append(p["post_id"])
        elif st == 0:
            return  # the node went away
        i += 1


def load(node, alice, bob, media_id, seconds, kill=None):
    acked = {"posts": [], "comments": [], "likes": []}
    stop = threading.Event()
    t = threading.Thread(target=writer, args=(node, alice, bob, media_id, acked, stop))
    t.start()
    time.sleep(seconds)
    if kill is not None:
        kill()
    stop.set()
    t.join(60)
    check(not t.is_alive(), "writer stopped")
    return acked


def verify(node, alice, bob, acked):
    for pid in acked["posts"]:
        st, _, p = node.request("GET", "/v1/posts/%s" % pid, token=bob)
        check(st == 200, "acknowledged post %s is there after restart (%d)" % (pid, st))
        if pid in acked["likes"]:
            check(p["liked_by_me"] is True and p["likes_count"] == 1,
                  "acknowledged like on %s is there: %r" % (pid, p))
    for pid, cid in acked["comments"]:
        _, cs = node.expect(200, "GET", "/v1/posts/%s/comments" % pid, token=alice)
        check(any(c["comment_id"] == cid for c in cs["items"]),
              "acknowledged comment %s is there" % cid)


def main(args, nodes):
    node = Node(args.flockd, extra=["--rate-posts", "100000/1", "--rate-likes", "100000/1",
                                    "--rate-comments", "100000/1", "--no-request-log"]).start()
    nodes.append(node)
    _, alice = node.signup("alice")
    _, bob = node.signup("bob")
    node.expect(200, "POST", "/v1/users/alice/follow", token=bob, body={"action": "follow"})
    _, m = node.expect(201, "POST", "/v1/media", raw=png_bytes(), content_type="image/png",
                       token=alice)
    acked = load(node, alice, bob, m["media_id"], WRITE_SECONDS, kill=node.kill)
    check(len(acked["posts"]) > 5, "the writer got some writes in: %d" % len(acked["posts"]))

    again = Node(args.flockd, data_dir=node.data_dir, extra=node.extra).start()
    nodes.append(again)
    # Tokens from before the crash still verify: the key is on disk.
    again.expect(200, "GET", "/v1/users/alice", token=bob)
    verify(again, alice, bob, acked)
    _, login = again.expect(200, "POST", "/v1/login",
                            body={"username": "alice", "password": "correct horse battery"})
    check(login["user_id"], "login after restart")

    acked2 = load(again, alice, bob, m["media_id"], 1.0,
                  kill=lambda: again.proc.send_signal(15))
    code = again.proc.wait(timeout=30)
    check(code == 0, "SIGTERM: exit 0, got %r" % code)
    third = Node(args.flockd, data_dir=node.data_dir, extra=node.extra).start()
    nodes.append(third)
    verify(third, alice, bob, acked)
    verify(third, alice, bob, acked2)
    check(third.stop() == 0, "clean stop")


if __name__ == "__main__":
    run(main)
