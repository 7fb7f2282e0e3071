// api.js — flock's REST client for the bundled web page.
//
// Every call goes through request(): it adds the bearer token, an
// Idempotency-Key on writes, parses JSON and turns RFC 9457
// problem+json answers into ApiError (title, detail, status) so the UI
// can show the server's own words. A 401 on an authenticated call ends
// the session (listeners of 'unauthorized' go back to the log-in page).
//
// The session (token, user id, username, expiry) lives in localStorage
// under one key. Nothing here touches the DOM.

const SESSION_KEY = 'flock.session';
// Seconds before expiry at which a stored token counts as expired, so a
// request does not race the server's clock.
const TOKEN_EXPIRY_MARGIN_S = 30;

export class ApiError extends Error {
	constructor(status, problem, retryAfterS) {
		const title = (problem && problem.title) || httpTitle(status);
		super(title);
		this.name = 'ApiError';
		this.status = status;
		this.title = title;
		this.detail = (problem && problem.detail) || '';
		this.type = (problem && problem.type) || 'about:blank';
		this.retryAfterS = retryAfterS;
	}
	// One line for a person: "Title: detail" (or just the title).
	get text() {
		let t = this.detail && this.detail !== this.title ? `${this.title}: ${this.detail}` : this.title;
		if (this.status === 429 && this.retryAfterS)
			t += ` — try again in ${waitText(this.retryAfterS)}.`;
		return t;
	}
}

function waitText(s) {
	if (s < 90)
		return `${Math.max(1, Math.round(s))} s`;
	if (s < 5400)
		return `${Math.round(s / 60)} min`;
	return `${Math.round(s / 3600)} h`;
}

function httpTitle(status) {
	const titles = {
		0: 'Network error', 400: 'Bad request', 401: 'Please log in again',
		403: 'Not allowed', 404: 'Not found', 409: 'Conflict', 413: 'Too large',
		415: 'Unsupported media type', 422: 'Request reused', 429: 'Too many requests',
		500: 'Server error', 502: 'Bad gateway', 503: 'Service unavailable',
	};
	return titles[status] || `HTTP ${status}`;
}

// ---- session -------------------------------------------------------------

export const session = {
	current: null,
	load() {
		try {
			const s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
			if (s && s.token && (!s.expires_at || s.expires_at - TOKEN_EXPIRY_MARGIN_S * 1000 > Date.now()))
				this.current = s;
			else
				this.current = null;
		} catch {
			this.current = null;
		}
		return this.current;
	},
	save(answer, username) {
		const s = {
			token: answer.token,
			user_id: String(answer.user_id),
			username,
			expires_at: answer.expires_in ? Date.now() + answer.expires_in * 1000 : 0,
		};
		localStorage.setItem(SESSION_KEY, JSON.stringify(s));
		this.current = s;
		return s;
	},
	clear() {
		localStorage.removeItem(SESSION_KEY);
		this.current = null;
	},
	get token() { return this.current ? this.current.token : null; },
};

const listeners = new EventTarget();
export function onUnauthorized(fn) { listeners.addEventListener('unauthorized', fn); }

// A key for Idempotency-Key; getRandomValues works outside secure
// contexts too (randomUUID does not).
export function newKey() {
	const b = new Uint8Array(16);
	crypto.getRandomValues(b);
	return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---- requests ------------------------------------------------------------

function buildUrl(path, query) {
	const url = new URL(path, location.origin);
	if (query)
		for (const [k, v] of Object.entries(query))
			if (v !== undefined && v !== null && v !== '')
				url.searchParams.set(k, String(v));
	return url.pathname + url.search;
}

async function parseAnswer(res, authed) {
	const type = res.headers.get('Content-Type') || '';
	let body = null;
	if (res.status !== 204) {
		const text = await res.text();
		if (text && (type.includes('json') || /^\s*[[{]/.test(text))) {
			try { body = JSON.parse(text); } catch { body = null; }
		} else if (text && !res.ok) {
			body = { detail: text.slice(0, 300) };
		}
	}
	if (res.ok)
		return body;
	if (res.status === 401 && authed)
		listeners.dispatchEvent(new Event('unauthorized'));
	const retry = Number(res.headers.get('Retry-After')) || undefined;
	throw new ApiError(res.status, body, retry);
}

// method, path ('/v1/...'), and one of json / form / raw (+ rawType).
export async function request(method, path, opts = {}) {
	const headers = { Accept: 'application/json' };
	const authed = opts.auth !== false && !!session.token;
	if (authed)
		headers.Authorization = `Bearer ${session.token}`;
	let body;
	if (opts.json !== undefined) {
		headers['Content-Type'] = 'application/json';
		body = JSON.stringify(opts.json);
	} else if (opts.form) {
		body = opts.form;
	} else if (opts.raw) {
		headers['Content-Type'] = opts.rawType || 'application/octet-stream';
		body = opts.raw;
	}
	if (method === 'POST')
		headers['Idempotency-Key'] = opts.key || newKey();
	let res;
	try {
		res = await fetch(buildUrl(path, opts.query), { method, headers, body, signal: opts.signal, cache: 'no-store' });
	} catch (e) {
		if (e.name === 'AbortError')
			throw e;
		throw new ApiError(0, { title: 'Network error', detail: 'Could not reach the server. Check your connection.' });
	}
	return parseAnswer(res, authed);
}

// Uploads image bytes with progress (fetch has no upload progress).
// Answers {media_id, status}.
export function uploadMedia(file, onProgress) {
	return new Promise((resolve, reject) => {
		const xhr = new XMLHttpRequest();
		xhr.open('POST', '/v1/media');
		xhr.setRequestHeader('Accept', 'application/json');
		if (session.token)
			xhr.setRequestHeader('Authorization', `Bearer ${session.token}`);
		xhr.setRequestHeader('Idempotency-Key', newKey());
		// Image bytes as they are; a file the browser could not type
		// (some HEIF) goes as multipart `media`: the server sniffs both.
		const raw = !!(file.type && file.type.startsWith('image/'));
		if (raw)
			xhr.setRequestHeader('Content-Type', file.type);
		xhr.upload.onprogress = (e) => {
			if (e.lengthComputable && onProgress)
				onProgress(e.loaded / e.total);
		};
		xhr.onload = () => {
			let body = null;
			try { body = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { body = null; }
			if (xhr.status >= 200 && xhr.status < 300)
				resolve(body);
			else {
				if (xhr.status === 401)
					listeners.dispatchEvent(new Event('unauthorized'));
				reject(new ApiError(xhr.status, body, Number(xhr.getResponseHeader('Retry-After')) || undefined));
			}
		};
		xhr.onerror = () => reject(new ApiError(0, { title: 'Network error', detail: 'The upload did not reach the server.' }));
		if (raw) {
			xhr.send(file);
		} else {
			const form = new FormData();
			form.append('media', file, file.name || 'photo');
			xhr.send(form);
		}
	});
}

// ---- routes (API.md) -----------------------------------------------------

const enc = encodeURIComponent;

export const Api = {
	signup: (username, email, password) =>
		request('POST', '/v1/signup', { json: { username, email, password }, auth: false }),
	login: (username, password) =>
		request('POST', '/v1/login', { json: { username, password }, auth: false }),

	user: (username) => request('GET', `/v1/users/${enc(username)}`),
	updateMe: (fields) => request('PATCH', '/v1/users/me', { json: fields }),
	follow: (username, follow) =>
		request('POST', `/v1/users/${enc(username)}/follow`, { json: { action: follow ? 'follow' : 'unfollow' } }),
	followers: (username, cursor) =>
		request('GET', `/v1/users/${enc(username)}/followers`, { query: { after_cursor: cursor } }),
	following: (username, cursor) =>
		request('GET', `/v1/users/${enc(username)}/following`, { query: { after_cursor: cursor } }),
	userPosts: (username, cursor, limit) =>
		request('GET', `/v1/users/${enc(username)}/posts`, { query: { after_cursor: cursor, limit } }),

	media: (id) => request('GET', `/v1/media/${enc(id)}`),
	createPost: (caption, mediaId) => request('POST', '/v1/posts', { json: { caption, media_id: mediaId } }),
	post: (id) => request('GET', `/v1/posts/${enc(id)}`),
	deletePost: (id) => request('DELETE', `/v1/posts/${enc(id)}`),
	like: (id, like) => request('POST', `/v1/posts/${enc(id)}/like`, { json: { action: like ? 'like' : 'unlike' } }),
	comments: (id, cursor) => request('GET', `/v1/posts/${enc(id)}/comments`, { query: { after_cursor: cursor } }),
	comment: (id, text) => request('POST', `/v1/posts/${enc(id)}/comments`, { json: { text } }),
	deleteComment: (postId, commentId) =>
		request('DELETE', `/v1/posts/${enc(postId)}/comments/${enc(commentId)}`),

	feed: (cursor, limit) => request('GET', '/v1/feed', { query: { after_cursor: cursor, limit } }),

	stories: () => request('GET', '/v1/stories'),
	createStory: (mediaId) => request('POST', '/v1/stories', { json: { media_id: mediaId } }),
	storySeen: (id) => request('POST', `/v1/stories/${enc(id)}/seen`),

	notifications: (cursor, limit) =>
		request('GET', '/v1/notifications', { query: { after_cursor: cursor, limit } }),
	markRead: (upToSeq) => request('POST', '/v1/notifications/read', { json: { up_to_seq: upToSeq } }),

	searchUsers: (q, signal) => request('GET', '/v1/search', { query: { q, type: 'users' }, signal }),
};

// Pages are {items, next_cursor}; tolerate a bare array or other keys.
export function itemsOf(page, ...keys) {
	if (Array.isArray(page))
		return page;
	if (!page)
		return [];
	for (const k of ['items', ...keys])
		if (Array.isArray(page[k]))
			return page[k];
	return [];
}
