// live.js — the WebSocket live stream (GET /v1/stream).
//
// One socket per signed-in page. Events {type, seq, data} are handed to
// onEvent in seq order, each at most once: after a drop the stream
// reconnects with ?since=LAST_SEQ (exponential backoff with jitter, at
// once after a 4008 "too slow" close) so the server replays what was
// missed, and anything at or below the last seq is ignored. A
// {"type":"resync"} means the server no longer holds the missed events:
// onEvent gets it and the page refetches over REST. Seen events are
// acked (batched) so the server can drop them.
//
// Browsers cannot see why an upgrade failed; after a few failures in a
// row onProbe() is asked to check the token over REST (a 401 there ends
// the session).

// First retry delay, and the cap: the server may be restarting.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30000;
// A socket open this long counts as healthy: the next drop starts the
// backoff from the beginning again.
const HEALTHY_AFTER_MS = 5000;
// Acks are batched: one per this many milliseconds at most.
const ACK_DELAY_MS = 250;
// Failed connects in a row before the token is checked over REST.
const FAILURES_BEFORE_PROBE = 3;
// Close code the server uses for a reader that fell behind.
const CLOSE_TOO_SLOW = 4008;

export class LiveStream {
	constructor({ token, onEvent, onStatus, onProbe }) {
		this.token = token;
		this.onEvent = onEvent;
		this.onStatus = onStatus || (() => {});
		this.onProbe = onProbe || (() => {});
		this.lastSeq = null;     // highest seq handed to onEvent
		this.acceptNext = false; // after a resync: take the next seq as is
		this.ws = null;
		this.attempt = 0;        // failures since the last healthy socket
		this.timer = 0;
		this.ackTimer = 0;
		this.openedAt = 0;
		this.stopped = true;
		this.paused = false;
		this.status = 'offline';
		this.connects = 0;       // sockets opened so far (for tests and the status line)
		this.onOnline = () => this.reconnectNow();
	}

	start() {
		this.stopped = false;
		window.addEventListener('online', this.onOnline);
		this.connect();
	}

	stop() {
		this.stopped = true;
		window.removeEventListener('online', this.onOnline);
		clearTimeout(this.timer);
		clearTimeout(this.ackTimer);
		if (this.ws) {
			const ws = this.ws;
			this.ws = null;
			ws.close(1000, 'bye');
		}
		this.setStatus('offline');
	}

	// Drops the socket and stays away until resume() (tests use this to
	// prove that ?since= replays what was missed).
	pause() {
		this.paused = true;
		clearTimeout(this.timer);
		if (this.ws) {
			const ws = this.ws;
			this.ws = null;
			ws.close(1000, 'paused');
		}
		this.setStatus('offline');
	}

	resume() {
		this.paused = false;
		this.reconnectNow();
	}

	reconnectNow() {
		if (this.stopped || this.paused || this.ws)
			return;
		clearTimeout(this.timer);
		this.attempt = 0;
		this.connect();
	}

	url() {
		const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
		let u = `${proto}//${location.host}/v1/stream?access_token=${encodeURIComponent(this.token)}`;
		if (this.lastSeq !== null)
			u += `&since=${this.lastSeq}`;
		return u;
	}

	setStatus(s) {
		if (this.status === s)
			return;
		this.status = s;
		this.onStatus(s);
	}

	connect() {
		if (this.stopped || this.paused)
			return;
		this.setStatus(this.connects ? 'reconnecting' : 'connecting');
		let ws;
		try {
			ws = new WebSocket(this.url());
		} catch {
			this.scheduleReconnect(false);
			return;
		}
		this.ws = ws;
		let opened = false;
		ws.onopen = () => {
			if (this.ws !== ws)
				return;
			opened = true;
			this.openedAt = Date.now();
			this.connects++;
			this.setStatus('live');
		};
		ws.onmessage = (m) => {
			if (this.ws === ws)
				this.receive(m.data);
		};
		ws.onclose = (e) => {
			if (this.ws !== ws)
				return;
			this.ws = null;
			const healthy = opened && Date.now() - this.openedAt >= HEALTHY_AFTER_MS;
			if (healthy || e.code === CLOSE_TOO_SLOW)
				this.attempt = 0;
			this.scheduleReconnect(opened);
		};
		ws.onerror = () => { /* onclose follows and decides */ };
	}

	scheduleReconnect(wasOpen) {
		if (this.stopped || this.paused)
			return;
		this.setStatus('reconnecting');
		if (!wasOpen && this.attempt + 1 >= FAILURES_BEFORE_PROBE)
			this.onProbe();
		const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
		const delay = base / 2 + Math.random() * (base / 2);
		this.attempt++;
		clearTimeout(this.timer);
		this.timer = setTimeout(() => this.connect(), delay);
	}

	receive(text) {
		let ev;
		try {
			ev = JSON.parse(text);
		} catch {
			return;
		}
		if (!ev || typeof ev.type !== 'string')
			return;
		const seq = typeof ev.seq === 'number' ? ev.seq : (ev.seq != null ? Number(ev.seq) : null);
		if (ev.type === 'resync') {
			// The stream's position after a resync is the seq it names
			// (when it names one), else whatever event comes next.
			if (seq !== null && !Number.isNaN(seq) && seq > 0)
				this.lastSeq = seq;
			else
				this.acceptNext = true;
			this.onEvent(ev);
			return;
		}
		if (seq !== null && !Number.isNaN(seq)) {
			if (this.lastSeq !== null && seq <= this.lastSeq && !this.acceptNext)
				return; // replayed twice across a reconnect
			this.acceptNext = false;
			this.lastSeq = seq;
			this.scheduleAck();
		}
		try {
			this.onEvent(ev);
		} catch (e) {
			console.error('flock: live event handler failed', e);
		}
	}

	scheduleAck() {
		if (this.ackTimer)
			return;
		this.ackTimer = setTimeout(() => {
			this.ackTimer = 0;
			if (this.ws && this.ws.readyState === WebSocket.OPEN && this.lastSeq !== null)
				this.ws.send(JSON.stringify({ type: 'ack', seq: this.lastSeq }));
		}, ACK_DELAY_MS);
	}
}
