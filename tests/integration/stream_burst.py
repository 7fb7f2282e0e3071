"""stream_burst — a burst of events reaches a real WebSocket client as
one text message per event, in order, none lost or repeated.

The gateway writes the frames a stream has queued in one wake-up with
one send, framing them itself. alice reads her stream, leaves, and bob
comments on her post BURST times; alice resumes with since=<last seq>,
so the domain replays every missed event at once. Debian's
python3-websockets parses the frames (it refuses a malformed header or
length); each message must be one JSON event with the next seq.
"""
import asyncio
import json
import time

import websockets

from flocklib import Node, check, fail, png_bytes, run, wait_until

# Fewer than the events the domain holds for a resume (256).
BURST = 200
WS_TIMEOUT_S = 15


async def read_events(port, token, since, count, before=None):
    """Opens a stream (resuming after since unless None), runs before()
    once it is open, and returns the next count events."""
    uri = "ws://127.0.0.1:%d/v1/stream" % port
    if since is not None:
        uri += "?since=%d" % since
    ws = await websockets.connect(uri, extra_headers={"Authorization": "Bearer " + token},
                                  open_timeout=WS_TIMEOUT_S, ping_interval=None)
    events = []
    deadline = time.time() + WS_TIMEOUT_S
    try:
        if before is not None:
            before()
        while len(events) < count:
            left = deadline - time.time()
            if left <= 0:
                fail("stream: %d of %d events within %ds; last %r"
                     % (len(events), count, WS_TIMEOUT_S, events[-3:]))
            msg = await asyncio.wait_for(ws.recv(), left)
            check(isinstance(msg, str), "events are text frames")
            events.append(json.loads(msg))
    finally:
        await ws.close()
    return events


def main(args, nodes):
    node = Node(args.flockd, extra=["--rate-comments", "100000/1",
                                    "--no-request-log"]).start()
    nodes.append(node)
    _, alice = node.signup("alice")
    _, bob = node.signup("bob")
    _, m = node.expect(201, "POST", "/v1/media", raw=png_bytes(), content_type="image/png",
                       token=alice)
    _, post = node.expect(201, "POST", "/v1/posts", token=alice,
                          body={"caption": "say something", "media_id": m["media_id"]})
    path = "/v1/posts/%s/comments" % post["post_id"]
    # The media's processing ends with a post.updated event: let it pass
    # before the stream opens, so the burst holds comments only.
    wait_until("media ready", lambda: node.expect(
        200, "GET", "/v1/posts/%s" % post["post_id"], token=alice)[1]
        ["media"]["status"] == "ready")

    # One event seen, so alice has a seq to resume from.
    first = asyncio.run(read_events(node.port, alice, None, 1, lambda: node.expect(
        201, "POST", path, token=bob, body={"text": "first"})))
    last = first[-1]["seq"]

    for i in range(BURST):
        node.expect(201, "POST", path, token=bob, body={"text": "comment %d" % i})
    got = asyncio.run(read_events(node.port, alice, last, BURST))
    seqs = [e.get("seq") for e in got]
    check(seqs == list(range(last + 1, last + 1 + BURST)),
          "the burst arrives in seq order from since+1: %r" % seqs[:5])
    texts = [e["data"].get("text", "") for e in got
             if e.get("type") == "notification" and e["data"].get("type") == "comment"]
    check(len(texts) == BURST, "every event is a comment notification: %d of %d"
          % (len(texts), BURST))
    print("stream burst: %d events after seq %d" % (BURST, last), flush=True)


if __name__ == "__main__":
    run(main)
