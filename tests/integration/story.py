"""story — the full story over REST and the live stream.

Two users sign up; bob follows alice; alice uploads an image and posts;
bob's stream receives the feed item and alice's stream the notifications
of bob's like and comment; feed paging returns every post once; stories,
search, profiles, follower lists, comments and notifications answer as
API.md says; bob disconnects, alice posts again, and bob resumes with
?since= and receives exactly what he missed, in sequence. The node
serves from two event loops (--gateway-loops 2), so requests and
streams land on either.
"""
import asyncio
import json
import time

import websockets

from flocklib import Node, check, fail, png_bytes, run, wait_until

WS_TIMEOUT_S = 15


class Stream:
    """A live stream connection collecting events in the background."""

    def __init__(self, port, token, since=None, header=True):
        self.port, self.token, self.since, self.header = port, token, since, header
        self.events = []
        self.ws = None
        self.task = None

    async def open(self):
        uri = "ws://127.0.0.1:%d/v1/stream" % self.port
        q = []
        headers = {}
        if self.header:
            headers["Authorization"] = "Bearer " + self.token
        else:
            q.append("access_token=" + self.token)
        if self.since is not None:
            q.append("since=%d" % self.since)
        if q:
            uri += "?" + "&".join(q)
        self.ws = await websockets.connect(uri, extra_headers=headers,
                                           open_timeout=WS_TIMEOUT_S,
                                           ping_interval=None)
        self.task = asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        try:
            async for msg in self.ws:
                check(isinstance(msg, str), "events are text frames")
                self.events.append(json.loads(msg))
        except websockets.ConnectionClosed:
            pass

    async def wait_for(self, what, pred, timeout_s=WS_TIMEOUT_S):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            for e in self.events:
                if pred(e):
                    return e
            await asyncio.sleep(0.02)
        fail("stream: no %s within %ds; got %r" % (what, timeout_s, self.events[-10:]))

    async def close(self):
        await self.ws.close()
        await asyncio.wait_for(self.task, WS_TIMEOUT_S)

    def last_seq(self):
        seqs = [e["seq"] for e in self.events if "seq" in e]
        return max(seqs) if seqs else 0


def check_consecutive(events, what):
    seqs = [e["seq"] for e in events if "seq" in e]
    for a, b in zip(seqs, seqs[1:]):
        check(b == a + 1, "%s: seq not consecutive: %r" % (what, seqs))


UPLOADS = [0]


def upload(node, token):
    UPLOADS[0] += 1
    _, body = node.expect(201, "POST", "/v1/media", raw=png_bytes(seed=UPLOADS[0]),
                          content_type="image/png", token=token)
    check(body.get("status") in ("processing", "ready"), "new media: %r" % body)
    return body["media_id"]


def post(node, token, caption):
    media_id = upload(node, token)
    _, p = node.expect(201, "POST", "/v1/posts", token=token,
                       body={"caption": caption, "media_id": media_id})
    for k in ("post_id", "user", "caption", "tags", "media", "likes_count",
              "comments_count", "liked_by_me", "created_at"):
        check(k in p, "a post has " + k)
    return p


async def scenario(node):
    alice_id, alice = node.signup("alice")
    bob_id, bob = node.signup("bob")
    _, f = node.expect(200, "POST", "/v1/users/alice/follow", token=bob,
                       body={"action": "follow"})
    check(f.get("following") is True, "bob follows alice")
    # Idempotent: following again is still following.
    _, f = node.expect(200, "POST", "/v1/users/alice/follow", token=bob,
                       body={"action": "follow"})
    check(f.get("following") is True, "follow is idempotent")

    sa = await Stream(node.port, alice, header=True).open()
    sb = await Stream(node.port, bob, header=False).open()

    p1 = post(node, alice, "hello #flock world")
    pid = p1["post_id"]
    check("flock" in p1["tags"], "hashtags parsed")
    await sb.wait_for("feed.post", lambda e: e.get("type") == "feed.post" and
                      e.get("data", {}).get("post_id") == pid)

    _, lk = node.expect(200, "POST", "/v1/posts/%s/like" % pid, token=bob,
                        body={"action": "like"})
    check(lk.get("liked") is True and lk.get("likes_count") == 1, "like: %r" % lk)
    _, c = node.expect(201, "POST", "/v1/posts/%s/comments" % pid, token=bob,
                       body={"text": "nice one"})
    check("comment_id" in c, "comment has an id: %r" % c)
    await sa.wait_for("like notification", lambda e: e.get("type") == "notification"
                      and e.get("data", {}).get("type") == "like")
    await sa.wait_for("comment notification", lambda e: e.get("type") == "notification"
                      and e.get("data", {}).get("type") == "comment")
    check_consecutive(sa.events, "alice")

    # Feed paging: 4 posts, pages of 2, no duplicates, Link header.
    pids = {pid}
    for i in range(3):
        pids.add(post(node, alice, "post %d #more" % i)["post_id"])
    await sb.wait_for("4 feed items", lambda e: len([x for x in sb.events
                      if x.get("type") == "feed.post"]) >= 4)
    seen, cursor, pages = [], None, 0
    while True:
        path = "/v1/feed?limit=2" + ("&after_cursor=" + cursor if cursor else "")
        hdrs, page = node.expect(200, "GET", path, token=bob)
        check(hdrs.get("cache-control") == "no-store", "API is no-store")
        check(len(page["items"]) <= 2, "limit respected")
        seen += [x["post_id"] for x in page["items"]]
        cursor = page.get("next_cursor")
        pages += 1
        if cursor is None:
            break
        check('rel="next"' in hdrs.get("link", ""), "Link header on a page with more")
        check(pages < 10, "feed paging ends")
    check(len(seen) == len(set(seen)), "no duplicate across pages: %r" % seen)
    check(set(seen) == pids, "feed has every post: %r vs %r" % (seen, pids))

    _, n = node.expect(200, "GET", "/v1/notifications", token=alice)
    types = [x["type"] for x in n["items"]]
    check("like" in types and "comment" in types, "notifications: %r" % types)
    check(n.get("unread_count", 0) >= 2, "unread count")
    top = max(x["seq"] for x in n["items"])
    node.expect(204, "POST", "/v1/notifications/read", token=alice,
                body={"up_to_seq": top})
    _, n = node.expect(200, "GET", "/v1/notifications", token=alice)
    check(n.get("unread_count") == 0, "read marks everything read")

    # Profiles, lists, comments.
    _, u = node.expect(200, "GET", "/v1/users/alice", token=bob)
    check(u["followers_count"] == 1 and u["followed_by_me"] is True, "profile: %r" % u)
    check(u["posts_count"] == 4, "posts count: %r" % u)
    _, fl = node.expect(200, "GET", "/v1/users/alice/followers", token=bob)
    check([x["username"] for x in fl["items"]] == ["bob"], "followers: %r" % fl)
    _, fl = node.expect(200, "GET", "/v1/users/bob/following", token=bob)
    check([x["username"] for x in fl["items"]] == ["alice"], "following: %r" % fl)
    _, ups = node.expect(200, "GET", "/v1/users/alice/posts?limit=50", token=bob)
    check(len(ups["items"]) == 4, "user posts")
    ids = [int(x["post_id"]) for x in ups["items"]]
    check(ids == sorted(ids, reverse=True), "user posts newest first")
    _, cs = node.expect(200, "GET", "/v1/posts/%s/comments" % pid, token=alice)
    check([x["text"] for x in cs["items"]] == ["nice one"], "comments: %r" % cs)
    _, pg = node.expect(200, "GET", "/v1/posts/%s" % pid, token=bob)
    check(pg["likes_count"] == 1 and pg["liked_by_me"] is True, "post view: %r" % pg)
    _, me = node.expect(200, "PATCH", "/v1/users/me", token=alice,
                        body={"bio": "photos of things"})
    check(me.get("bio") == "photos of things", "bio updated: %r" % me)

    # Stories.
    media = upload(node, alice)
    _, st = node.expect(201, "POST", "/v1/stories", token=alice,
                        body={"media_id": media, "expires_in": 3600})
    check("story_id" in st and "expires_at" in st, "story: %r" % st)
    _, trays = node.expect(200, "GET", "/v1/stories", token=bob)
    check(any(t["user"]["username"] == "alice" for t in trays["trays"]),
          "bob sees alice's story: %r" % trays)
    node.expect(204, "POST", "/v1/stories/%s/seen" % st["story_id"], token=bob)

    # Search.
    _, sr = node.expect(200, "GET", "/v1/search?q=ali&type=users", token=bob)
    check(any(x.get("username") == "alice" for x in sr["items"]), "search users: %r" % sr)
    _, sr = node.expect(200, "GET", "/v1/search?q=flock&type=tags", token=bob)
    check(len(sr["items"]) >= 1, "search tags: %r" % sr)

    # Disconnect, miss a post, resume with since: nothing lost.
    last = sb.last_seq()
    check(last > 0, "bob has seen events")
    await sb.close()
    missed = post(node, alice, "while you were away")["post_id"]
    _, lk = node.expect(200, "POST", "/v1/posts/%s/like" % missed, token=bob,
                        body={"action": "like"})
    sb2 = await Stream(node.port, bob, since=last).open()
    e = await sb2.wait_for("missed post", lambda e: e.get("type") == "feed.post"
                           and e.get("data", {}).get("post_id") == missed)
    check(sb2.events[0].get("seq") == last + 1,
          "resume starts right after since: %r" % sb2.events[:3])
    check_consecutive(sb2.events, "bob resumed")

    # Deleting: the author may; the stream tells followers.
    node.expect(204, "DELETE", "/v1/posts/%s" % missed, token=alice)
    await sb2.wait_for("post.deleted", lambda e: e.get("type") == "post.deleted")
    node.expect(404, "GET", "/v1/posts/%s" % missed, token=bob)
    await sb2.close()
    await sa.close()


def main(args, nodes):
    node = Node(args.flockd, extra=["--gateway-loops", "2"]).start()
    nodes.append(node)
    asyncio.run(asyncio.wait_for(scenario(node), 120))
    code = node.stop()
    check(code == 0, "flockd exits 0 on SIGTERM, got %r" % code)


if __name__ == "__main__":
    run(main)
