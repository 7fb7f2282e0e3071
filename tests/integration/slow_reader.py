"""slow_reader — a reader too slow for its queue is closed with 4008 and
resumes with ?since= without losing an event.

alice's stream socket has a tiny receive buffer and stops reading; bob
comments on her post until the gateway's per-socket queue (lowered to 8
frames by --ws-queue-max) overflows and the socket is closed with 4008
(counted in /metrics). alice then reads what reached her, reconnects with
since=<last seq>, and receives every comment notification exactly once.
"""
import time

from flocklib import Node, check, png_bytes, run
from wsraw import RawStream

COMMENTS_MAX = 1500


def main(args, nodes):
    node = Node(args.flockd, extra=["--ws-queue-max", "8", "--rate-comments", "100000/1",
                                    "--no-request-log"]).start()
    nodes.append(node)
    _, alice = node.signup("alice")
    _, bob = node.signup("bob")
    _, m = node.expect(201, "POST", "/v1/media", raw=png_bytes(), content_type="image/png",
                       token=alice)
    _, post = node.expect(201, "POST", "/v1/posts", token=alice,
                          body={"caption": "comment away", "media_id": m["media_id"]})
    slow = RawStream(node.port, alice, rcvbuf=1024)
    check(slow.status == 101, "slow stream upgraded")
    sent = 0
    cut = False
    text = "a reasonably long comment so that frames fill buffers " * 3
    while sent < COMMENTS_MAX:
        node.expect(201, "POST", "/v1/posts/%s/comments" % post["post_id"], token=bob,
                    body={"text": "%d %s" % (sent, text)})
        sent += 1
        if sent % 50 == 0:
            _, _, metrics = node.request("GET", "/metrics")
            line = [l for l in metrics.decode().splitlines()
                    if l.startswith("flock_ws_closed_slow_total ")]
            if line and int(line[0].split()[1]) >= 1:
                cut = True
                break
    check(cut, "the slow reader was cut off after %d comments" % sent)
    got = slow.events(timeout_s=3)
    check(slow.close_code in (None, 4008), "close code 4008, got %r" % slow.close_code)
    last = max([e["seq"] for e in got if "seq" in e] or [0])
    print("slow reader: %d comments sent, %d events read before the cut, last seq %d, close %r" % (sent, len(got), last, slow.close_code), flush=True)
    slow.close()

    # Resume from the last seq seen until every comment has arrived; a
    # resume larger than the queue is itself cut with 4008 after the
    # frames already queued, so each round makes progress.
    seqs = [e["seq"] for e in got if "seq" in e]
    comments = [e for e in got if e.get("type") == "notification"
                and e["data"].get("type") == "comment"]
    rounds = 0
    deadline = time.time() + 60
    while len(comments) < sent and time.time() < deadline and rounds < 50:
        rounds += 1
        fresh = RawStream(node.port, alice, since=last)
        check(fresh.status == 101, "resumed stream upgraded")
        while len(comments) < sent:
            batch = fresh.events(timeout_s=2)
            for e in batch:
                check(e.get("type") != "resync", "no resync: the domain holds the events")
                seqs.append(e["seq"])
                last = e["seq"]
                if e.get("type") == "notification" and e["data"].get("type") == "comment":
                    comments.append(e)
            if batch:
                fresh.send_text('{"type":"ack","seq":%d}' % last)
            if not batch or fresh.closed or fresh.close_code is not None:
                break
        check(fresh.close_code in (None, 4008), "resume closed with %r" % fresh.close_code)
        fresh.close()
    print("slow reader: caught up in %d resumes" % rounds, flush=True)
    check(len(comments) == sent, "every comment notification arrives once: %d of %d"
          % (len(comments), sent))
    check(seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap or repeat in seq")


if __name__ == "__main__":
    run(main)
