// app.js — flock's bundled web client.
//
// A single page over the public API (API.md) and the live stream: sign
// up / log in, the ranked feed with infinite scroll, likes and comments,
// uploads, profiles with follow, stories, notifications with a live
// badge, and people search. Views are picked from the URL hash
// (#/, #/u/NAME, #/p/ID, #/notifications) so the server serves one page.
//
// State that outlives a view (the feed loaded so far, the unread count,
// the live stream) is kept in `state`; views render from it and live
// events update it and whatever cards are on screen. Every post card
// carries data-post-id, so an event finds the cards it changes.
//
// What it does not do: direct messages, video, editing posts, offline
// storage beyond the session token.

import { Api, ApiError, session, onUnauthorized, uploadMedia, itemsOf } from './api.js';
import { LiveStream } from './live.js';
import { h, icon, avatar, userLink, usernameOf, count, compact, timeEl, toast, showError, richText } from './ui.js';

// Caption limit (API.md "Limits").
const CAPTION_CHARACTERS_MAX = 2200;
const COMMENT_CHARACTERS_MAX = 2200;
const BIO_CHARACTERS_MAX = 150;
// Feed and grid pages: how far ahead of the viewport the next page loads.
const PRELOAD_MARGIN = '1200px 0px';
// Search waits for typing to pause this long before asking the server.
const SEARCH_DEBOUNCE_MS = 150;
// A story stays on screen this long before the next one.
const STORY_SHOW_MS = 5000;
// Posts whose media is still processing are re-read after these delays
// in case a post.updated event was missed (the stream normally says).
const PROCESSING_RECHECK_MS = [1500, 3000, 6000, 12000, 24000, 48000];
const USERNAME_RE = /^[a-z0-9._]{1,30}$/;

const $ = (id) => document.getElementById(id);

const state = {
	me: null,            // {user_id, username} from the session
	meProfile: null,     // GET /v1/users/{me}
	live: null,          // LiveStream
	unread: 0,
	feed: newFeedState(),
	view: null,          // {name, cleanup}
	feedList: null,      // the feed's <div> while the feed view is shown
	stories: null,       // last GET /v1/stories answer
	storiesEl: null,     // the tray while shown
	notifList: null,     // the notifications list while shown
	maxNotifSeq: 0,
	recheck: new Map(),  // post_id -> timer for processing media
	// Live events received, by kind (shown to tests and debugging).
	counts: { feedPost: 0, postUpdated: 0, notification: 0, resync: 0 },
};

function newFeedState() {
	return { items: [], cursor: null, done: false, loading: false, loaded: false, error: null };
}

// ---- boot ------------------------------------------------------------------

function boot() {
	fillNavIcons();
	onUnauthorized(() => {
		if (!session.current)
			return;
		signOut('Your session has ended. Please log in again.');
	});
	window.addEventListener('hashchange', route);
	setupSearch();
	$('nav-new').addEventListener('click', () => openComposer('post'));
	$('nav-logout').addEventListener('click', () => signOut());
	document.addEventListener('visibilitychange', () => {
		if (!document.hidden && state.live)
			state.live.reconnectNow();
	});
	// A handle for tests and debugging: the live stream and the state.
	window.flock = { state, get live() { return state.live; } };
	if (session.load())
		startSession();
	route();
}

function fillNavIcons() {
	$('nav-home').prepend(icon('home'));
	$('nav-new').append(icon('square'), icon('plus', 'icon-overlay'));
	$('nav-notifications').prepend(icon('heart'));
	$('nav-logout').append(icon('logout'));
	document.querySelector('.search-icon').append(icon('search'));
}

function startSession() {
	const s = session.current;
	state.me = { user_id: s.user_id, username: s.username };
	state.feed = newFeedState();
	$('topbar').hidden = false;
	$('nav-profile').href = `#/u/${encodeURIComponent(s.username)}`;
	renderNavAvatar();
	state.live = new LiveStream({
		token: s.token,
		onEvent: onLiveEvent,
		onStatus: setLiveStatus,
		onProbe: () => Api.notifications(null, 1).catch(() => {}),
	});
	state.live.start();
	refreshUnread();
	Api.user(s.username).then((p) => {
		state.meProfile = p;
		renderNavAvatar();
	}).catch(() => {});
}

function signOut(message) {
	if (state.live)
		state.live.stop();
	state.live = null;
	session.clear();
	state.me = null;
	state.meProfile = null;
	state.feed = newFeedState();
	state.stories = null;
	for (const t of state.recheck.values())
		clearTimeout(t);
	state.recheck.clear();
	setUnread(0);
	$('topbar').hidden = true;
	for (const d of document.querySelectorAll('dialog[open]'))
		d.close();
	if (location.hash && location.hash !== '#/')
		history.replaceState(null, '', location.pathname + location.search);
	route();
	if (message)
		toast(message, 'error');
}

function renderNavAvatar() {
	const link = $('nav-profile');
	link.replaceChildren(avatar(state.meProfile || state.me, 'xs'));
}

function setLiveStatus(s) {
	const el = $('live-status');
	const words = { live: 'live', connecting: 'connecting', reconnecting: 'reconnecting', offline: 'offline' };
	el.dataset.status = s;
	el.setAttribute('aria-label', `Live updates: ${words[s] || s}`);
	el.title = `Live updates: ${words[s] || s}`;
}

// ---- routing -----------------------------------------------------------------

function route() {
	if (state.view && state.view.cleanup)
		state.view.cleanup();
	state.view = null;
	state.feedList = null;
	state.storiesEl = null;
	state.notifList = null;
	closeSearch();
	const main = $('main');
	main.replaceChildren();
	main.removeAttribute('aria-busy');
	if (!session.current) {
		document.title = 'flock — log in';
		main.className = 'main-auth';
		renderAuth(main);
		return;
	}
	main.className = '';
	const path = (location.hash || '#/').slice(1);
	const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
	let name = 'feed';
	let cleanup = null;
	if (parts[0] === 'u' && parts[1]) {
		name = 'profile';
		cleanup = viewProfile(main, parts[1].toLowerCase());
	} else if (parts[0] === 'p' && parts[1]) {
		name = 'post';
		cleanup = viewPost(main, parts[1]);
	} else if (parts[0] === 'notifications') {
		name = 'notifications';
		cleanup = viewNotifications(main);
	} else {
		cleanup = viewFeed(main);
	}
	state.view = { name, cleanup };
	for (const a of document.querySelectorAll('.nav-item[href]'))
		a.removeAttribute('aria-current');
	const current = { feed: 'nav-home', notifications: 'nav-notifications' }[name] ||
		(name === 'profile' && parts[1] === state.me.username ? 'nav-profile' : null);
	if (current)
		$(current).setAttribute('aria-current', 'page');
	window.scrollTo(0, 0);
	updateTitle();
}

function updateTitle(base) {
	if (base)
		state.titleBase = base;
	else if (!state.view)
		state.titleBase = 'flock';
	else if (state.view.name === 'feed')
		state.titleBase = 'flock';
	const unread = state.unread ? `(${state.unread}) ` : '';
	document.title = unread + (state.titleBase || 'flock');
}

// ---- auth ----------------------------------------------------------------------

function renderAuth(main) {
	let mode = 'login';
	const error = h('p.form-error#auth-error', { role: 'alert', hidden: true });
	const username = h('input#auth-username', {
		name: 'username', type: 'text', required: true, autocomplete: 'username',
		autocapitalize: 'none', spellcheck: 'false', maxlength: '30',
		pattern: '[a-z0-9._]{1,30}', 'aria-describedby': 'auth-username-hint',
	});
	const email = h('input#auth-email', { name: 'email', type: 'email', required: true, autocomplete: 'email' });
	const password = h('input#auth-password', {
		name: 'password', type: 'password', required: true, minlength: '8', maxlength: '128',
		autocomplete: 'current-password',
	});
	const emailField = h('div.field', h('label', { for: 'auth-email', text: 'Email' }), email);
	const hint = h('p.hint#auth-username-hint', { text: 'Lowercase letters, digits, dots and underscores.' });
	const submit = h('button.btn.btn-primary.btn-block', { type: 'submit', text: 'Log in' });
	const heading = h('h1.auth-heading', { text: 'Log in to flock' });
	const switchText = h('span');
	const switchBtn = h('button.link-btn', { type: 'button' });
	const form = h('form.auth-form', { novalidate: true, 'aria-labelledby': 'auth-heading' },
		h('div.field', h('label', { for: 'auth-username', text: 'Username' }), username, hint),
		emailField,
		h('div.field', h('label', { for: 'auth-password', text: 'Password' }), password),
		error, submit);
	heading.id = 'auth-heading';

	function setMode(m) {
		mode = m;
		const signup = m === 'signup';
		heading.textContent = signup ? 'Create your account' : 'Log in to flock';
		submit.textContent = signup ? 'Sign up' : 'Log in';
		emailField.hidden = !signup;
		email.required = signup;
		hint.hidden = !signup;
		password.autocomplete = signup ? 'new-password' : 'current-password';
		switchText.textContent = signup ? 'Have an account? ' : "Don't have an account? ";
		switchBtn.textContent = signup ? 'Log in' : 'Sign up';
		error.hidden = true;
	}
	switchBtn.addEventListener('click', () => setMode(mode === 'login' ? 'signup' : 'login'));
	username.addEventListener('input', () => {
		const lower = username.value.toLowerCase();
		if (lower !== username.value)
			username.value = lower;
	});

	function fail(text) {
		error.textContent = text;
		error.hidden = false;
	}

	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		const u = username.value.trim().toLowerCase();
		if (!USERNAME_RE.test(u))
			return fail('Usernames are 1–30 lowercase letters, digits, dots or underscores.');
		if (mode === 'signup' && !email.checkValidity())
			return fail('Enter a valid email address.');
		if (password.value.length < 8)
			return fail('Passwords have at least 8 characters.');
		error.hidden = true;
		submit.disabled = true;
		submit.classList.add('is-busy');
		try {
			const answer = mode === 'signup'
				? await Api.signup(u, email.value.trim(), password.value)
				: await Api.login(u, password.value);
			session.save(answer, u);
			startSession();
			if (location.hash !== '#/')
				location.hash = '#/';
			else
				route();
			if (mode === 'signup')
				toast(`Welcome to flock, ${u}!`);
		} catch (err) {
			fail(err instanceof ApiError ? err.text : String(err));
		} finally {
			submit.disabled = false;
			submit.classList.remove('is-busy');
		}
	});

	setMode('login');
	main.append(h('div.auth',
		h('div.auth-art', { 'aria-hidden': 'true' },
			h('div.art-phone', h('div.art-card.a1'), h('div.art-card.a2'), h('div.art-card.a3'))),
		h('div.auth-column',
			h('div.card.auth-card',
				h('div.brand.brand-lg', { text: 'flock' }),
				h('p.auth-tagline', { text: 'Share photos with the people you follow, as they happen.' }),
				heading, form),
			h('div.card.auth-switch', switchText, switchBtn))));
	username.focus();
}

// ---- live events -------------------------------------------------------------------

function onLiveEvent(ev) {
	const d = ev.data || {};
	switch (ev.type) {
	case 'feed.post':
		state.counts.feedPost++;
		receiveFeedPost(d.post || d);
		break;
	case 'post.updated':
		state.counts.postUpdated++;
		receivePostUpdate(d.post || d);
		break;
	case 'post.deleted':
		removePost(String(d.post_id || (d.post && d.post.post_id) || ''));
		break;
	case 'notification':
		state.counts.notification++;
		receiveNotification(d.notification || d);
		break;
	case 'story':
		refreshStoriesSoon();
		break;
	case 'resync':
		state.counts.resync++;
		resync();
		break;
	default:
		break;
	}
}

async function receiveFeedPost(p) {
	let post = p;
	if (!post || !post.post_id)
		return;
	if (!post.media || !post.user) {
		try { post = await Api.post(post.post_id); } catch { return; }
	}
	insertFeedTop(post, true);
}

function insertFeedTop(post, live) {
	const id = String(post.post_id);
	if (state.feed.items.some((x) => String(x.post_id) === id)) {
		receivePostUpdate(post);
		return;
	}
	state.feed.items.unshift(post);
	if (!state.feedList)
		return;
	state.feedList.querySelector('.feed-empty')?.remove();
	const card = postCard(post);
	if (live)
		card.classList.add('arrived');
	state.feedList.prepend(card);
	if (live && window.scrollY > 400)
		showNewPostsPill();
}

function showNewPostsPill() {
	if (document.querySelector('.new-posts-pill'))
		return;
	const pill = h('button.new-posts-pill', {
		type: 'button',
		on: { click: () => { window.scrollTo({ top: 0, behavior: 'smooth' }); pill.remove(); } },
	}, icon('chevronLeft', 'icon-up'), 'New posts');
	document.body.append(pill);
	const onScroll = () => {
		if (window.scrollY < 200) {
			pill.remove();
			window.removeEventListener('scroll', onScroll);
		}
	};
	window.addEventListener('scroll', onScroll, { passive: true });
}

function mergeInto(target, patch) {
	for (const [k, v] of Object.entries(patch))
		if (v !== undefined && v !== null)
			target[k] = v;
}

// A post.updated may carry a whole post or only {post_id, media}.
function receivePostUpdate(patch) {
	if (!patch)
		return;
	let id = patch.post_id ? String(patch.post_id) : '';
	if (!id && patch.media_id) {
		const card = [...document.querySelectorAll('[data-media-id]')].find((c) => c.dataset.mediaId === String(patch.media_id));
		id = card ? card.dataset.postId : '';
		patch = { post_id: id, media: patch };
	}
	if (!id)
		return;
	rememberMedia(patch.media);
	const known = state.feed.items.find((x) => String(x.post_id) === id);
	if (known)
		mergeInto(known, patch);
	for (const card of document.querySelectorAll(`[data-post-id="${CSS.escape(id)}"]`))
		updateCard(card, patch);
	if (patch.media && patch.media.status && patch.media.status !== 'processing')
		stopRecheck(id);
}

function removePost(id) {
	if (!id)
		return;
	state.feed.items = state.feed.items.filter((x) => String(x.post_id) !== id);
	for (const el of document.querySelectorAll(`[data-post-id="${CSS.escape(id)}"]`))
		el.remove();
}

function receiveNotification(n) {
	if (typeof n.unread_count === 'number')
		setUnread(n.unread_count);
	else if (!n.read)
		setUnread(state.unread + 1);
	const seq = Number(n.seq) || 0;
	if (state.notifList && n.type) {
		state.notifList.querySelector('.empty')?.remove();
		state.notifList.prepend(notificationItem(n));
		if (seq)
			markReadSoon(seq);
	}
	if (seq > state.maxNotifSeq)
		state.maxNotifSeq = seq;
}

async function resync() {
	state.feed = newFeedState();
	refreshUnread();
	if (state.view && (state.view.name === 'feed' || state.view.name === 'notifications'))
		route();
}

async function refreshUnread() {
	try {
		const page = await Api.notifications(null, 1);
		setUnread(Number(page && page.unread_count) || 0);
		const first = itemsOf(page)[0];
		if (first && Number(first.seq) > state.maxNotifSeq)
			state.maxNotifSeq = Number(first.seq);
	} catch { /* the badge waits for the stream */ }
}

function setUnread(n) {
	state.unread = Math.max(0, n | 0);
	const badge = $('notif-badge');
	badge.textContent = state.unread > 99 ? '99+' : String(state.unread);
	badge.hidden = state.unread === 0;
	badge.classList.remove('bump');
	void badge.offsetWidth; // restart the animation
	if (state.unread)
		badge.classList.add('bump');
	$('nav-notifications').setAttribute('aria-label',
		state.unread ? `Notifications, ${state.unread} unread` : 'Notifications');
	updateTitle(state.titleBase);
}

// ---- posts -----------------------------------------------------------------------

function captionAlt(post) {
	const who = usernameOf(post.user) || 'someone';
	const text = (post.caption || '').replace(/\s+/g, ' ').trim();
	if (!text)
		return `Photo by ${who}`;
	return text.length > 150 ? `${text.slice(0, 150)}…` : text;
}

function srcsetOf(variants) {
	const widths = { small: 320, medium: 640, large: 1080 };
	return Object.entries(widths).filter(([k]) => variants[k]).map(([k, w]) => `${variants[k]} ${w}w`).join(', ');
}

// What a media box shows; a box is rebuilt only when this changes.
function mediaSig(post) {
	const m = post.media || {};
	const v = m.variants || {};
	return `${m.status || ''}|${v.thumb || ''}|${v.medium || ''}|${v.large || ''}`;
}

// Media items seen ready, by media_id: a post read later that still says
// "processing" shows them at once.
const readyMedia = new Map();
const READY_MEDIA_CACHED_MAX = 500;

function rememberMedia(m) {
	if (!m || !m.media_id || m.status !== 'ready')
		return;
	if (readyMedia.size >= READY_MEDIA_CACHED_MAX)
		readyMedia.delete(readyMedia.keys().next().value);
	readyMedia.set(String(m.media_id), m);
}

function withKnownMedia(post) {
	const m = post.media;
	if (m && m.status === 'processing' && readyMedia.has(String(m.media_id)))
		post.media = readyMedia.get(String(m.media_id));
	else
		rememberMedia(m);
	return post;
}

function mediaBox(post, sizes = '(max-width: 640px) 100vw, 470px') {
	withKnownMedia(post);
	const m = post.media || {};
	const v = m.variants || {};
	const box = h('div.post-media', { dataset: { sig: mediaSig(post) } });
	const src = v.medium || v.large || v.small || v.thumb;
	if (src && m.status !== 'failed' && m.status !== 'processing' || src && !m.status) {
		const img = h('img', {
			src, alt: captionAlt(post), loading: 'lazy', decoding: 'async', sizes,
			width: '1080', height: '1080',
		});
		const set = srcsetOf(v);
		if (set)
			img.setAttribute('srcset', set);
		img.addEventListener('load', () => box.classList.add('loaded'), { once: true });
		img.addEventListener('error', () => box.classList.add('broken'), { once: true });
		box.append(img);
		box.dataset.state = 'ready';
	} else if (m.status === 'failed') {
		box.dataset.state = 'failed';
		box.append(h('div.media-note', icon('image'), h('span', { text: 'This photo could not be processed.' })));
	} else {
		box.dataset.state = 'processing';
		box.append(h('div.media-note', h('span.spinner', { 'aria-hidden': 'true' }),
			h('span', { text: 'Processing photo…' })));
		box.setAttribute('aria-busy', 'true');
		if (post.post_id)
			scheduleRecheck(String(post.post_id), 0);
	}
	return box;
}

function scheduleRecheck(id, attempt) {
	if (state.recheck.has(id) && attempt === 0)
		return;
	if (attempt >= PROCESSING_RECHECK_MS.length) {
		state.recheck.delete(id);
		return;
	}
	state.recheck.set(id, setTimeout(async () => {
		if (!session.current || !document.querySelector(`[data-post-id="${CSS.escape(id)}"]`)) {
			state.recheck.delete(id);
			return;
		}
		try {
			const p = await Api.post(id);
			if (p.media && p.media.status !== 'processing') {
				state.recheck.delete(id);
				receivePostUpdate(p);
				return;
			}
			// The media item may be ready before its post says so.
			const mediaId = p.media && p.media.media_id;
			const m = mediaId ? await Api.media(mediaId).catch(() => null) : null;
			if (m && m.status && m.status !== 'processing') {
				state.recheck.delete(id);
				receivePostUpdate({ post_id: id, media: m });
				return;
			}
		} catch (e) {
			if (e.status === 404) {
				state.recheck.delete(id);
				return;
			}
		}
		scheduleRecheck(id, attempt + 1);
	}, PROCESSING_RECHECK_MS[attempt]));
}

function stopRecheck(id) {
	const t = state.recheck.get(id);
	if (t)
		clearTimeout(t);
	state.recheck.delete(id);
}

function likesText(n) {
	return count(n, 'like', 'likes');
}

function updateCard(card, patch) {
	const post = card._post;
	if (!post)
		return;
	mergeInto(post, patch);
	if (patch.media) {
		const old = card.querySelector('.post-media, .tile-media');
		if (old && old.dataset.sig !== mediaSig(post)) {
			const fresh = card.classList.contains('tile') ? tileMedia(post) : mediaBox(post);
			old.replaceWith(fresh);
			if (!card.classList.contains('tile'))
				attachDoubleTapLike(card, fresh);
		}
		card.dataset.mediaId = String((post.media && post.media.media_id) || '');
	}
	if ('likes_count' in patch || 'liked_by_me' in patch)
		renderLikeState(card);
	if ('comments_count' in patch)
		renderCommentsToggle(card);
}

function renderLikeState(card) {
	const post = card._post;
	const btn = card.querySelector('.like-btn');
	if (btn) {
		btn.setAttribute('aria-pressed', post.liked_by_me ? 'true' : 'false');
		btn.setAttribute('aria-label', post.liked_by_me ? 'Unlike' : 'Like');
	}
	const likes = card.querySelector('.likes');
	if (likes)
		likes.textContent = likesText(post.likes_count);
}

async function toggleLike(card, force) {
	const post = card._post;
	const want = force === undefined ? !post.liked_by_me : force;
	if (want === !!post.liked_by_me)
		return;
	const prev = { liked_by_me: post.liked_by_me, likes_count: post.likes_count };
	post.liked_by_me = want;
	post.likes_count = Math.max(0, (Number(post.likes_count) || 0) + (want ? 1 : -1));
	syncPost(post);
	const btn = card.querySelector('.like-btn');
	if (want && btn) {
		btn.classList.remove('pop');
		void btn.offsetWidth;
		btn.classList.add('pop');
	}
	try {
		const r = await Api.like(post.post_id, want);
		if (r && typeof r.liked === 'boolean')
			post.liked_by_me = r.liked;
		if (r && r.likes_count !== undefined)
			post.likes_count = Number(r.likes_count);
	} catch (e) {
		Object.assign(post, prev);
		showError(e, want ? "Couldn't like" : "Couldn't unlike");
	}
	syncPost(post);
}

// Copies a post's like/comment counts onto every card showing it.
function syncPost(post) {
	const id = String(post.post_id);
	for (const card of document.querySelectorAll(`[data-post-id="${CSS.escape(id)}"]`)) {
		if (card._post !== post)
			mergeInto(card._post, { liked_by_me: post.liked_by_me, likes_count: post.likes_count, comments_count: post.comments_count });
		renderLikeState(card);
		renderCommentsToggle(card);
	}
	const known = state.feed.items.find((x) => String(x.post_id) === id);
	if (known && known !== post)
		mergeInto(known, { liked_by_me: post.liked_by_me, likes_count: post.likes_count, comments_count: post.comments_count });
}

function attachDoubleTapLike(card, media) {
	media.addEventListener('dblclick', () => {
		toggleLike(card, true);
		const heart = h('span.burst', { 'aria-hidden': 'true' }, icon('heart'));
		media.append(heart);
		setTimeout(() => heart.remove(), 900);
	});
}

function postCard(post, opts = {}) {
	const id = String(post.post_id);
	const mine = post.user && String(post.user.user_id) === String(state.me.user_id);
	const card = h('article.card.post', {
		'aria-label': `Post by ${usernameOf(post.user)}`,
		dataset: { postId: id, mediaId: String((post.media && post.media.media_id) || '') },
	});
	card._post = post;
	const headerRight = [];
	if (mine)
		headerRight.push(h('button.icon-btn.delete-btn', {
			type: 'button', 'aria-label': 'Delete post', title: 'Delete post',
			on: { click: () => deletePost(card) },
		}, icon('trash')));
	const header = h('header.post-header',
		h('a.post-author', { href: `#/u/${encodeURIComponent(usernameOf(post.user))}` },
			avatar(post.user, 'sm'), h('span.username', { text: usernameOf(post.user) })),
		h('span.dot', { 'aria-hidden': 'true', text: '•' }),
		h('a.post-time', { href: `#/p/${encodeURIComponent(id)}`, 'aria-label': 'Open post' }, timeEl(post.created_at)),
		h('span.spacer'), headerRight);
	const media = mediaBox(post, opts.sizes);
	attachDoubleTapLike(card, media);
	const likeBtn = h('button.icon-btn.like-btn', {
		type: 'button', 'aria-pressed': post.liked_by_me ? 'true' : 'false',
		'aria-label': post.liked_by_me ? 'Unlike' : 'Like',
		on: { click: () => toggleLike(card) },
	}, icon('heart'));
	const commentInput = h('input.comment-input', {
		type: 'text', placeholder: 'Add a comment…', 'aria-label': `Add a comment to ${usernameOf(post.user)}'s post`,
		maxlength: String(COMMENT_CHARACTERS_MAX), autocomplete: 'off',
	});
	const commentBtn = h('button.icon-btn', {
		type: 'button', 'aria-label': 'Comment', on: { click: () => commentInput.focus() },
	}, icon('comment'));
	const actions = h('div.post-actions', likeBtn, commentBtn);
	const likes = h('p.likes', { text: likesText(post.likes_count) });
	const caption = post.caption
		? h('p.caption', userLink(post.user), ' ', h('span.caption-text', richText(post.caption)))
		: null;
	const toggle = h('button.link-btn.comments-toggle', { type: 'button', on: { click: () => loadComments(card) } });
	const list = h('ul.comments', { 'aria-label': 'Comments' });
	const more = h('button.link-btn.comments-more', { type: 'button', hidden: true, text: 'Load more comments',
		on: { click: () => loadComments(card, true) } });
	const postBtn = h('button.post-comment', { type: 'submit', text: 'Post', disabled: true });
	commentInput.addEventListener('input', () => { postBtn.disabled = !commentInput.value.trim(); });
	const form = h('form.comment-form', {
		on: { submit: (e) => { e.preventDefault(); addComment(card, commentInput, postBtn); } },
	}, commentInput, postBtn);
	card.append(header, media, h('div.post-body', actions, likes, caption, toggle, list, more), form);
	card._comments = { loaded: false, cursor: null, ids: new Set() };
	renderCommentsToggle(card);
	if (opts.expandComments && Number(post.comments_count) > 0)
		loadComments(card);
	return card;
}

function renderCommentsToggle(card) {
	const t = card.querySelector('.comments-toggle');
	if (!t)
		return;
	const n = Number(card._post.comments_count) || 0;
	t.hidden = card._comments.loaded || n === 0;
	t.textContent = n === 1 ? 'View 1 comment' : `View all ${compact(n)} comments`;
}

function commentItem(card, c) {
	const author = c.user || c.author || c.by_user;
	const mine = usernameOf(author) === state.me.username;
	const postMine = card._post.user && usernameOf(card._post.user) === state.me.username;
	const li = h('li.comment', { dataset: { commentId: String(c.comment_id || '') } },
		h('p', userLink(author), ' ', h('span', richText(c.text || '')), ' ', timeEl(c.created_at)));
	if ((mine || postMine) && c.comment_id) {
		li.append(h('button.icon-btn.comment-delete', {
			type: 'button', 'aria-label': 'Delete comment',
			on: {
				click: async () => {
					try {
						await Api.deleteComment(card._post.post_id, c.comment_id);
						li.remove();
						card._post.comments_count = Math.max(0, (Number(card._post.comments_count) || 1) - 1);
						syncPost(card._post);
					} catch (e) { showError(e, "Couldn't delete the comment"); }
				},
			},
		}, icon('close')));
	}
	return li;
}

async function loadComments(card, more) {
	const st = card._comments;
	const list = card.querySelector('.comments');
	const moreBtn = card.querySelector('.comments-more');
	if (st.loading)
		return;
	st.loading = true;
	try {
		const page = await Api.comments(card._post.post_id, more ? st.cursor : null);
		if (!more)
			for (const li of [...list.children])
				if (li.dataset.commentId && !st.ids.has(li.dataset.commentId))
					li.remove();
		for (const c of itemsOf(page)) {
			const cid = String(c.comment_id || '');
			if (cid && st.ids.has(cid))
				continue;
			st.ids.add(cid);
			list.append(commentItem(card, c));
		}
		st.cursor = page && page.next_cursor;
		st.loaded = true;
		moreBtn.hidden = !st.cursor;
		renderCommentsToggle(card);
	} catch (e) {
		showError(e, "Couldn't load comments");
	} finally {
		st.loading = false;
	}
}

async function addComment(card, input, btn) {
	const text = input.value.trim();
	if (!text)
		return;
	btn.disabled = true;
	input.disabled = true;
	try {
		const c = await Api.comment(card._post.post_id, text);
		const comment = c && c.text ? c : { ...(c || {}), text, user: state.me, created_at: new Date().toISOString() };
		if (!comment.user && !comment.author)
			comment.user = state.me;
		const cid = String(comment.comment_id || '');
		if (cid)
			card._comments.ids.add(cid);
		card.querySelector('.comments').append(commentItem(card, comment));
		card._post.comments_count = (Number(card._post.comments_count) || 0) + 1;
		if (!card._comments.loaded)
			card._comments.loaded = true;
		syncPost(card._post);
		input.value = '';
	} catch (e) {
		showError(e, "Couldn't post your comment");
	} finally {
		input.disabled = false;
		btn.disabled = !input.value.trim();
		input.focus();
	}
}

async function deletePost(card) {
	if (!confirm('Delete this post? This cannot be undone.'))
		return;
	try {
		await Api.deletePost(card._post.post_id);
		removePost(String(card._post.post_id));
		toast('Post deleted');
		if (state.view && state.view.name === 'post')
			location.hash = '#/';
	} catch (e) {
		showError(e, "Couldn't delete the post");
	}
}

// ---- feed ----------------------------------------------------------------------------

function skeletonCard() {
	return h('div.card.post.skeleton', { 'aria-hidden': 'true' },
		h('div.post-header', h('span.sk.sk-avatar'), h('span.sk.sk-line')),
		h('div.sk.sk-media'), h('div.post-body', h('span.sk.sk-line'), h('span.sk.sk-line.short')));
}

function emptyFeed() {
	return h('div.card.feed-empty',
		h('div.empty-illustration', { 'aria-hidden': 'true' }, icon('image')),
		h('h2', { text: 'Welcome to flock' }),
		h('p', { text: 'Follow people to see their photos here. Search for someone you know, or share your first photo.' }),
		h('div.empty-actions',
			h('button.btn.btn-primary', { type: 'button', text: 'Share a photo', on: { click: () => openComposer('post') } }),
			h('button.btn', { type: 'button', text: 'Find people', on: { click: () => $('search-input').focus() } })));
}

function viewFeed(main) {
	updateTitle('flock');
	const list = h('div.feed-list');
	const status = h('div.feed-status', { role: 'status' });
	const sentinel = h('div.sentinel', { 'aria-hidden': 'true' });
	const tray = h('section.card.stories#stories', { 'aria-label': 'Stories' });
	const column = h('div.feed-column', tray, h('section.feed', { 'aria-label': 'Feed' }, list, status, sentinel));
	main.append(h('div.layout', column, sidebar()));
	state.feedList = list;
	state.storiesEl = tray;
	renderStories();
	refreshStories();

	for (const p of state.feed.items)
		list.append(postCard(p));

	async function loadMore() {
		const f = state.feed;
		if (f.loading || f.done)
			return;
		f.loading = true;
		status.replaceChildren();
		if (!f.loaded)
			list.append(skeletonCard(), skeletonCard());
		try {
			const page = await Api.feed(f.cursor);
			if (state.feed !== f)
				return;
			list.querySelectorAll('.skeleton').forEach((s) => s.remove());
			const seen = new Set(f.items.map((x) => String(x.post_id)));
			for (const p of itemsOf(page)) {
				if (seen.has(String(p.post_id)))
					continue;
				seen.add(String(p.post_id));
				f.items.push(p);
				if (state.feedList === list)
					list.append(postCard(p));
			}
			f.cursor = page && page.next_cursor;
			f.done = !f.cursor;
			f.loaded = true;
			f.error = null;
		} catch (e) {
			list.querySelectorAll('.skeleton').forEach((s) => s.remove());
			f.error = e;
			status.replaceChildren(h('p', { text: e.text || String(e) }),
				h('button.btn', { type: 'button', text: 'Try again', on: { click: () => loadMore() } }));
			showError(e, "Couldn't load your feed");
		} finally {
			f.loading = false;
			renderFeedEnd();
		}
		// The page may still be shorter than the screen: keep going.
		if (!f.done && !f.error && state.feedList === list && sentinel.getBoundingClientRect().top < window.innerHeight + 600)
			loadMore();
	}

	function renderFeedEnd() {
		if (state.feedList !== list)
			return;
		const f = state.feed;
		if (f.loaded && f.items.length === 0 && !list.querySelector('.feed-empty'))
			list.append(emptyFeed());
		if (f.done && f.items.length > 0 && !f.error)
			status.replaceChildren(h('div.caught-up', h('span.check', { 'aria-hidden': 'true', text: '✓' }),
				h('p', { text: "You're all caught up" })));
		else if (f.loading)
			status.replaceChildren(h('span.spinner', { 'aria-hidden': 'true' }));
		else if (!f.error)
			status.replaceChildren();
	}

	const io = new IntersectionObserver((entries) => {
		if (entries.some((e) => e.isIntersecting))
			loadMore();
	}, { rootMargin: PRELOAD_MARGIN });
	io.observe(sentinel);
	if (!state.feed.loaded)
		loadMore();
	else
		renderFeedEnd();
	return () => io.disconnect();
}

function sidebar() {
	const me = state.meProfile || state.me;
	return h('aside.sidebar', { 'aria-label': 'Your account' },
		h('div.me-card',
			h('a', { href: `#/u/${encodeURIComponent(state.me.username)}`, 'aria-label': 'Your profile' }, avatar(me, 'md')),
			h('div.me-names', userLink(state.me), h('span.muted', { text: 'Signed in' })),
			h('button.link-btn', { type: 'button', text: 'Log out', on: { click: () => signOut() } })),
		h('div.side-box',
			h('p.side-title', { text: 'Share something' }),
			h('p.muted', { text: 'Photos appear in your followers’ feeds the moment you post them.' }),
			h('div.side-actions',
				h('button.btn.btn-primary.btn-sm', { type: 'button', text: 'New post', on: { click: () => openComposer('post') } }),
				h('button.btn.btn-sm', { type: 'button', text: 'Add to story', on: { click: () => openComposer('story') } }))),
		h('p.footer-note', { text: 'flock · a small photo network' }));
}

// ---- stories -----------------------------------------------------------------------------

let storiesTimer = 0;
function refreshStoriesSoon() {
	clearTimeout(storiesTimer);
	storiesTimer = setTimeout(refreshStories, 300);
}

async function refreshStories() {
	try {
		state.stories = await Api.stories();
	} catch (e) {
		if (!state.stories)
			state.stories = { trays: [] };
		if (e.status && e.status !== 404)
			console.warn('stories:', e.text);
	}
	renderStories();
}

function traysOf() {
	const trays = (state.stories && (state.stories.trays || state.stories.items)) || [];
	return trays.filter((t) => t && Array.isArray(t.items) && t.items.length);
}

// The tray's order: mine first, then unseen before seen.
function orderedTrays() {
	const trays = traysOf();
	const mine = trays.find((t) => usernameOf(t.user) === state.me.username);
	const others = trays.filter((t) => t !== mine);
	others.sort((a, b) => Number(a.items.every((i) => i.seen)) - Number(b.items.every((i) => i.seen)));
	return { mine, all: mine ? [mine, ...others] : others, others };
}

// Opens a user's stories from a fresh tray (media may have turned ready
// since the tray was drawn).
async function openStoriesOf(username) {
	await refreshStories();
	const { all } = orderedTrays();
	const i = all.findIndex((t) => usernameOf(t.user) === username);
	if (i >= 0)
		openStories(all, i);
	else if (username === state.me.username)
		openComposer('story');
	else
		toast('That story has expired.');
}

function renderStories() {
	const tray = state.storiesEl;
	if (!tray)
		return;
	const { mine, others } = orderedTrays();
	const ul = h('ul.story-list');
	const meUser = state.meProfile || state.me;
	const myBtn = h('button.story', {
		type: 'button',
		'aria-label': mine ? 'Your story' : 'Add to your story',
		on: { click: () => (mine ? openStoriesOf(state.me.username) : openComposer('story')) },
	}, h(`span.ring${mine ? (mine.items.every((i) => i.seen) ? '.seen' : '') : '.none'}`, avatar(meUser, 'lg')),
	mine ? null : h('span.story-add', { 'aria-hidden': 'true' }, icon('plus')),
	h('span.story-name', { text: 'Your story' }));
	ul.append(h('li', myBtn));
	for (const t of others) {
		const allSeen = t.items.every((x) => x.seen);
		const name = usernameOf(t.user);
		ul.append(h('li', h('button.story', {
			type: 'button',
			'aria-label': `Story by ${name}${allSeen ? ', seen' : ''}`,
			on: { click: () => openStoriesOf(name) },
		}, h(`span.ring${allSeen ? '.seen' : ''}`, avatar(t.user, 'lg')),
		h('span.story-name', { text: name }))));
	}
	tray.replaceChildren(ul);
}

function openStories(trays, trayIndex) {
	const dlg = $('story-viewer');
	let ti = trayIndex;
	let ii = 0;
	let timer = 0;
	{
		const first = trays[ti].items.findIndex((x) => !x.seen);
		ii = first >= 0 ? first : 0;
	}
	const bars = h('div.story-bars');
	const head = h('div.story-head');
	const frame = h('div.story-frame');
	const prev = h('button.story-nav.story-prev', { type: 'button', 'aria-label': 'Previous story' }, icon('chevronLeft'));
	const next = h('button.story-nav.story-next', { type: 'button', 'aria-label': 'Next story' }, icon('chevronRight'));
	const close = h('button.icon-btn.story-close', { type: 'button', 'aria-label': 'Close stories' }, icon('close'));
	dlg.replaceChildren(h('div.story-stage', bars, head, frame, prev, next, close));

	function show() {
		clearTimeout(timer);
		const t = trays[ti];
		const item = t.items[ii];
		bars.replaceChildren(...t.items.map((_, k) => h(`span.bar${k < ii ? '.done' : ''}${k === ii ? '.active' : ''}`, h('span.fill'))));
		head.replaceChildren(avatar(t.user, 'sm'), h('span.username', { text: usernameOf(t.user) }), timeEl(item.created_at));
		const v = (item.media && item.media.variants) || {};
		const src = v.large || v.medium || v.small;
		frame.replaceChildren(src
			? h('img', { src, alt: `Story by ${usernameOf(t.user)}` })
			: h('div.media-note', h('span.spinner', { 'aria-hidden': 'true' }), h('span', { text: 'Processing…' })));
		if (!src && item.media && item.media.media_id) {
			// Still processing: ask for the media again while it shows.
			Api.media(item.media.media_id).then((m) => {
				if (m && m.status === 'ready' && trays[ti] && trays[ti].items[ii] === item && dlg.open) {
					item.media = m;
					show();
				}
			}).catch(() => {});
		}
		if (!item.seen) {
			item.seen = true;
			Api.storySeen(item.story_id).catch(() => {});
		}
		timer = setTimeout(step, STORY_SHOW_MS);
	}
	function step(delta = 1) {
		ii += delta;
		if (ii >= trays[ti].items.length) {
			ti++;
			ii = 0;
		} else if (ii < 0) {
			ti--;
			ii = ti >= 0 ? trays[ti].items.length - 1 : 0;
		}
		if (ti < 0 || ti >= trays.length) {
			dlg.close();
			return;
		}
		show();
	}
	prev.addEventListener('click', () => step(-1));
	next.addEventListener('click', () => step(1));
	close.addEventListener('click', () => dlg.close());
	dlg.addEventListener('close', () => {
		clearTimeout(timer);
		renderStories();
	}, { once: true });
	dlg.showModal();
	show();
	next.focus();
}

// ---- composer -------------------------------------------------------------------------------

function openComposer(kind) {
	const dlg = $('composer');
	if (dlg.open)
		return;
	let file = null;
	let previewUrl = '';
	let mode = kind;
	const title = h('h2#composer-title', { text: '' });
	const fileInput = h('input#composer-file.visually-hidden-input', { type: 'file', accept: 'image/jpeg,image/png,image/webp,image/heic,image/heif,image/*' });
	const drop = h('label.dropzone', { for: 'composer-file' },
		icon('image', 'icon-xl'),
		h('span.drop-title', { text: 'Drag a photo here' }),
		h('span.btn.btn-primary.btn-sm', { text: 'Choose a photo' }),
		h('span.hint', { text: 'JPEG, PNG, WebP or HEIF, up to 30 MB' }));
	const preview = h('div.preview', { hidden: true });
	const captionLabel = h('label', { for: 'composer-caption', text: 'Caption' });
	const caption = h('textarea#composer-caption', { rows: '4', maxlength: String(CAPTION_CHARACTERS_MAX), placeholder: 'Write a caption… #hashtags welcome' });
	const counter = h('span.counter', { 'aria-live': 'off', text: `0/${CAPTION_CHARACTERS_MAX}` });
	const captionField = h('div.field.caption-field', captionLabel, caption, counter);
	const progress = h('progress.upload-progress', { max: '1', value: '0', hidden: true, 'aria-label': 'Upload progress' });
	const error = h('p.form-error', { role: 'alert', hidden: true });
	const share = h('button.btn.btn-primary', { type: 'submit', text: 'Share', disabled: true });
	const cancel = h('button.btn', { type: 'button', text: 'Cancel', on: { click: () => dlg.close() } });
	const tabs = h('div.segmented', { role: 'radiogroup', 'aria-label': 'Share as' });
	const tabPost = h('button', { type: 'button', role: 'radio', text: 'Post' });
	const tabStory = h('button', { type: 'button', role: 'radio', text: 'Story' });
	tabs.append(tabPost, tabStory);

	function setMode(m) {
		mode = m;
		title.textContent = m === 'story' ? 'Add to your story' : 'Create new post';
		tabPost.setAttribute('aria-checked', String(m === 'post'));
		tabStory.setAttribute('aria-checked', String(m === 'story'));
		captionField.hidden = m === 'story';
	}
	tabPost.addEventListener('click', () => setMode('post'));
	tabStory.addEventListener('click', () => setMode('story'));

	function pick(f) {
		if (!f)
			return;
		if (f.type && !f.type.startsWith('image/')) {
			error.textContent = 'That file is not an image.';
			error.hidden = false;
			return;
		}
		file = f;
		error.hidden = true;
		if (previewUrl)
			URL.revokeObjectURL(previewUrl);
		previewUrl = URL.createObjectURL(f);
		preview.replaceChildren(h('img', { src: previewUrl, alt: 'Preview of the chosen photo' }),
			h('button.btn.btn-sm.change-photo', { type: 'button', text: 'Change', on: { click: () => fileInput.click() } }));
		preview.hidden = false;
		drop.hidden = true;
		share.disabled = false;
	}
	fileInput.addEventListener('change', () => pick(fileInput.files[0]));
	drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('drag'); });
	drop.addEventListener('dragleave', () => drop.classList.remove('drag'));
	drop.addEventListener('drop', (e) => {
		e.preventDefault();
		drop.classList.remove('drag');
		pick(e.dataTransfer.files[0]);
	});
	caption.addEventListener('input', () => {
		counter.textContent = `${caption.value.length}/${CAPTION_CHARACTERS_MAX}`;
	});

	const form = h('form.composer', {
		on: {
			submit: async (e) => {
				e.preventDefault();
				if (!file)
					return;
				share.disabled = true;
				share.classList.add('is-busy');
				cancel.disabled = true;
				error.hidden = true;
				progress.hidden = false;
				progress.value = 0;
				try {
					const m = await uploadMedia(file, (x) => { progress.value = x; });
					progress.value = 1;
					if (!m || !m.media_id)
						throw new ApiError(500, { title: 'Upload failed', detail: 'The server did not return a media id.' });
					if (mode === 'story') {
						await Api.createStory(m.media_id);
						dlg.close();
						toast('Added to your story');
						refreshStories();
					} else {
						const post = await Api.createPost(caption.value, m.media_id);
						dlg.close();
						toast('Your photo has been shared');
						onOwnPost(post);
					}
				} catch (err) {
					error.textContent = err instanceof ApiError ? err.text : String(err);
					error.hidden = false;
					progress.hidden = true;
				} finally {
					share.classList.remove('is-busy');
					share.disabled = !file;
					cancel.disabled = false;
				}
			},
		},
	},
	h('header.sheet-header', title, h('button.icon-btn', { type: 'button', 'aria-label': 'Close', on: { click: () => dlg.close() } }, icon('close'))),
	tabs, fileInput, drop, preview, captionField, progress, error,
	h('div.sheet-actions', cancel, share));
	setMode(mode);
	dlg.replaceChildren(form);
	dlg.addEventListener('close', () => {
		if (previewUrl)
			URL.revokeObjectURL(previewUrl);
		dlg.replaceChildren();
	}, { once: true });
	dlg.showModal();
	drop.focus?.();
}

function onOwnPost(post) {
	if (!post || !post.post_id)
		return;
	if (!post.user)
		post.user = state.meProfile || state.me;
	state.feed.items = state.feed.items.filter((x) => String(x.post_id) !== String(post.post_id));
	if (state.view && state.view.name === 'feed') {
		insertFeedTop(post, true);
		window.scrollTo({ top: 0, behavior: 'smooth' });
	} else if (state.view && state.view.name === 'profile' && state.profileName === state.me.username) {
		state.feed.items.unshift(post);
		const grid = document.querySelector('.grid');
		if (grid) {
			grid.querySelector('.grid-empty')?.remove();
			grid.prepend(postTile(post));
		}
		const n = document.querySelector('[data-stat="posts"] strong');
		if (n)
			n.textContent = compact((Number(n.dataset.value) || 0) + 1);
	} else {
		state.feed.items.unshift(post);
		location.hash = '#/';
	}
}

// ---- profile --------------------------------------------------------------------------------

function tileMedia(post) {
	withKnownMedia(post);
	const m = post.media || {};
	const v = m.variants || {};
	const src = v.thumb || v.small || v.medium;
	const box = h('div.tile-media', { dataset: { sig: mediaSig(post) } });
	if (src && m.status !== 'processing' && m.status !== 'failed' || src && !m.status) {
		const img = h('img', { src, alt: captionAlt(post), loading: 'lazy', decoding: 'async' });
		if (v.small && v.thumb)
			img.setAttribute('srcset', `${v.thumb} 150w, ${v.small} 320w`);
		img.setAttribute('sizes', '(max-width: 640px) 33vw, 300px');
		box.append(img);
	} else if (m.status === 'failed') {
		box.append(h('div.media-note', icon('image')));
	} else {
		box.append(h('div.media-note', h('span.spinner', { 'aria-hidden': 'true' })));
		if (post.post_id)
			scheduleRecheck(String(post.post_id), 0);
	}
	return box;
}

function postTile(post) {
	const id = String(post.post_id);
	const a = h('a.tile', {
		href: `#/p/${encodeURIComponent(id)}`,
		'aria-label': `Post: ${captionAlt(post)}`,
		dataset: { postId: id, mediaId: String((post.media && post.media.media_id) || '') },
	}, tileMedia(post),
	h('span.tile-overlay', { 'aria-hidden': 'true' },
		h('span', icon('heart'), compact(Number(post.likes_count) || 0)),
		h('span', icon('comment'), compact(Number(post.comments_count) || 0))));
	a._post = post;
	return a;
}

function viewProfile(main, name) {
	state.profileName = name;
	updateTitle(`@${name} • flock`);
	const page = h('div.profile-page');
	const head = h('header.profile-header', h('div.sk.sk-avatar-xl'), h('div.profile-info', h('span.sk.sk-line'), h('span.sk.sk-line.short')));
	const grid = h('div.grid', { 'aria-label': `Posts by ${name}`, role: 'list' });
	const sentinel = h('div.sentinel', { 'aria-hidden': 'true' });
	const status = h('div.feed-status', { role: 'status' });
	page.append(head, h('div.profile-tabs', h('span.tab.active', icon('grid'), 'Posts')), grid, status, sentinel);
	main.append(page);
	let alive = true;
	let io = null;
	let cursor = null;
	let done = false;
	let loading = false;

	async function loadPosts() {
		if (loading || done)
			return;
		loading = true;
		status.replaceChildren(h('span.spinner', { 'aria-hidden': 'true' }));
		try {
			const pg = await Api.userPosts(name, cursor);
			if (!alive)
				return;
			for (const p of itemsOf(pg)) {
				if (grid.querySelector(`[data-post-id="${CSS.escape(String(p.post_id))}"]`))
					continue;
				const tile = postTile(p);
				tile.setAttribute('role', 'listitem');
				grid.append(tile);
			}
			cursor = pg && pg.next_cursor;
			done = !cursor;
			status.replaceChildren();
			if (done && !grid.children.length)
				grid.append(h('div.grid-empty',
					h('div.empty-illustration', { 'aria-hidden': 'true' }, icon('image')),
					h('h2', { text: name === state.me.username ? 'Share your first photo' : 'No posts yet' }),
					name === state.me.username
						? h('button.btn.btn-primary', { type: 'button', text: 'New post', on: { click: () => openComposer('post') } })
						: null));
		} catch (e) {
			if (!alive)
				return;
			status.replaceChildren(h('p.muted', { text: e.text || String(e) }));
			done = true;
		} finally {
			loading = false;
		}
	}

	Api.user(name).then((u) => {
		if (!alive)
			return;
		head.replaceWith(profileHeader(u));
		io = new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting)) loadPosts(); }, { rootMargin: PRELOAD_MARGIN });
		io.observe(sentinel);
		loadPosts();
	}).catch((e) => {
		if (!alive)
			return;
		page.replaceChildren(h('div.card.not-found',
			h('h1', { text: e.status === 404 ? "Sorry, this page isn't available." : "Couldn't load this profile" }),
			h('p', { text: e.status === 404 ? `There is no one called @${name} here.` : e.text || String(e) }),
			h('a.btn', { href: '#/', text: 'Back to flock' })));
	});
	return () => {
		alive = false;
		if (io)
			io.disconnect();
	};
}

function profileHeader(u) {
	const isMe = String(u.user_id) === String(state.me.user_id) || u.username === state.me.username;
	if (isMe) {
		state.meProfile = u;
		renderNavAvatar();
	}
	const followers = h('strong', { text: compact(Number(u.followers_count) || 0), dataset: { value: String(Number(u.followers_count) || 0) } });
	const stat = (key, label, strong, onClick) => {
		const inner = [strong, ` ${label}`];
		return h('li', { dataset: { stat: key } }, onClick
			? h('button.link-btn.stat-btn', { type: 'button', on: { click: onClick } }, inner)
			: inner);
	};
	const posts = h('strong', { text: compact(Number(u.posts_count) || 0), dataset: { value: String(Number(u.posts_count) || 0) } });
	const following = h('strong', { text: compact(Number(u.following_count) || 0) });
	const actions = h('div.profile-actions');
	if (isMe) {
		actions.append(
			h('button.btn.btn-sm', { type: 'button', text: 'Edit profile', on: { click: () => openEditProfile(u) } }),
			h('button.btn.btn-sm', { type: 'button', text: 'New post', on: { click: () => openComposer('post') } }));
	} else {
		const btn = h('button.btn.btn-sm.follow-btn', { type: 'button' });
		const render = () => {
			btn.textContent = u.followed_by_me ? 'Following' : 'Follow';
			btn.classList.toggle('btn-primary', !u.followed_by_me);
			btn.setAttribute('aria-pressed', u.followed_by_me ? 'true' : 'false');
			btn.setAttribute('aria-label', u.followed_by_me ? `Unfollow ${u.username}` : `Follow ${u.username}`);
		};
		btn.addEventListener('click', async () => {
			const want = !u.followed_by_me;
			btn.disabled = true;
			btn.classList.add('is-busy');
			try {
				const r = await Api.follow(u.username, want);
				const now = r && typeof r.following === 'boolean' ? r.following : want;
				if (now !== !!u.followed_by_me) {
					u.followers_count = Math.max(0, (Number(u.followers_count) || 0) + (now ? 1 : -1));
					followers.textContent = compact(u.followers_count);
				}
				u.followed_by_me = now;
				render();
				if (now)
					toast(`You're following ${u.username}`);
				// Their posts belong in the feed now (or no longer).
				state.feed = newFeedState();
			} catch (e) {
				showError(e, want ? "Couldn't follow" : "Couldn't unfollow");
			} finally {
				btn.disabled = false;
				btn.classList.remove('is-busy');
			}
		});
		render();
		actions.append(btn);
	}
	return h('header.profile-header',
		h('div.profile-avatar', avatar(u, 'xl')),
		h('div.profile-info',
			h('div.profile-title', h('h1.profile-name', { text: u.username }), actions),
			h('ul.stats',
				stat('posts', Number(u.posts_count) === 1 ? 'post' : 'posts', posts),
				stat('followers', Number(u.followers_count) === 1 ? 'follower' : 'followers', followers,
					() => openUserList(`Followers`, (c) => Api.followers(u.username, c))),
				stat('following', 'following', following,
					() => openUserList('Following', (c) => Api.following(u.username, c)))),
			u.bio ? h('p.bio', richText(u.bio)) : null));
}

function openEditProfile(u) {
	const dlg = $('list-dialog');
	const bio = h('textarea#edit-bio', { rows: '3', maxlength: String(BIO_CHARACTERS_MAX) });
	bio.value = u.bio || '';
	const counter = h('span.counter', { text: `${bio.value.length}/${BIO_CHARACTERS_MAX}` });
	bio.addEventListener('input', () => { counter.textContent = `${bio.value.length}/${BIO_CHARACTERS_MAX}`; });
	const pic = h('input#edit-pic', { type: 'file', accept: 'image/*' });
	const error = h('p.form-error', { role: 'alert', hidden: true });
	const save = h('button.btn.btn-primary', { type: 'submit', text: 'Save' });
	const form = h('form.composer', {
		on: {
			submit: async (e) => {
				e.preventDefault();
				save.disabled = true;
				save.classList.add('is-busy');
				error.hidden = true;
				try {
					const fields = { bio: bio.value };
					if (pic.files[0]) {
						const m = await uploadMedia(pic.files[0]);
						fields.profile_pic_media_id = m.media_id;
					}
					await Api.updateMe(fields);
					dlg.close();
					toast('Profile saved');
					route();
				} catch (err) {
					error.textContent = err.text || String(err);
					error.hidden = false;
				} finally {
					save.disabled = false;
					save.classList.remove('is-busy');
				}
			},
		},
	},
	h('header.sheet-header', h('h2#list-dialog-title', { text: 'Edit profile' }),
		h('button.icon-btn', { type: 'button', 'aria-label': 'Close', on: { click: () => dlg.close() } }, icon('close'))),
	h('div.field', h('label', { for: 'edit-pic', text: 'Profile photo' }), pic),
	h('div.field.caption-field', h('label', { for: 'edit-bio', text: 'Bio' }), bio, counter),
	error,
	h('div.sheet-actions', h('button.btn', { type: 'button', text: 'Cancel', on: { click: () => dlg.close() } }), save));
	dlg.replaceChildren(form);
	dlg.showModal();
	bio.focus();
}

function openUserList(titleText, fetchPage) {
	const dlg = $('list-dialog');
	const list = h('ul.user-list');
	const more = h('button.link-btn', { type: 'button', text: 'Load more', hidden: true });
	let cursor = null;
	async function load() {
		more.hidden = true;
		try {
			const page = await fetchPage(cursor);
			for (const u of itemsOf(page, 'users'))
				list.append(h('li', h('a.user-row', { href: `#/u/${encodeURIComponent(usernameOf(u))}`, on: { click: () => dlg.close() } },
					avatar(u, 'sm'), h('span.username', { text: usernameOf(u) }))));
			cursor = page && page.next_cursor;
			more.hidden = !cursor;
			if (!list.children.length)
				list.append(h('li.muted.empty', { text: 'No one yet.' }));
		} catch (e) {
			list.append(h('li.form-error', { text: e.text || String(e) }));
		}
	}
	more.addEventListener('click', load);
	dlg.replaceChildren(h('header.sheet-header', h('h2#list-dialog-title', { text: titleText }),
		h('button.icon-btn', { type: 'button', 'aria-label': 'Close', on: { click: () => dlg.close() } }, icon('close'))),
	list, more);
	dlg.showModal();
	load();
}

// ---- single post ------------------------------------------------------------------------------

function viewPost(main, id) {
	updateTitle('Post • flock');
	let alive = true;
	const wrap = h('div.single-post', skeletonCard());
	main.append(wrap);
	Api.post(id).then((p) => {
		if (!alive)
			return;
		updateTitle(`${usernameOf(p.user)} on flock${p.caption ? `: “${p.caption.slice(0, 40)}”` : ''}`);
		wrap.replaceChildren(postCard(p, { expandComments: true, sizes: '(max-width: 640px) 100vw, 600px' }));
	}).catch((e) => {
		if (!alive)
			return;
		wrap.replaceChildren(h('div.card.not-found',
			h('h1', { text: e.status === 404 ? "Sorry, this post isn't available." : "Couldn't load this post" }),
			h('p', { text: e.status === 404 ? 'It may have been deleted.' : e.text || String(e) }),
			h('a.btn', { href: '#/', text: 'Back to feed' })));
	});
	return () => { alive = false; };
}

// ---- notifications ----------------------------------------------------------------------------

function notificationText(n) {
	const t = String(n.type || '');
	if (t.includes('like'))
		return 'liked your post.';
	if (t.includes('comment'))
		return n.text ? `commented: ${n.text}` : 'commented on your post.';
	if (t.includes('follow'))
		return 'started following you.';
	if (t.includes('mention'))
		return 'mentioned you.';
	return t.replace(/[._]/g, ' ');
}

function notificationItem(n) {
	const by = n.by_user || n.user || n.actor;
	const name = usernameOf(by);
	const href = n.post_id ? `#/p/${encodeURIComponent(String(n.post_id))}` : `#/u/${encodeURIComponent(name)}`;
	const kind = String(n.type || '').includes('like') ? 'like' : String(n.type || '').includes('comment') ? 'comment' : 'follow';
	return h(`li.notification${n.read ? '' : '.unread'}`, { dataset: { seq: String(n.seq || '') } },
		h('a.notification-link', { href },
			h('span.notif-avatar', avatar(by, 'md'), h(`span.notif-kind.kind-${kind}`, { 'aria-hidden': 'true' }, icon(kind === 'follow' ? 'user' : kind))),
			h('span.notification-text', h('strong', { text: name || 'Someone' }), ' ', notificationText(n), ' ',
				timeEl(n.created_at))));
}

let markReadTimer = 0;
let markReadSeq = 0;
function markReadSoon(seq) {
	markReadSeq = Math.max(markReadSeq, seq);
	clearTimeout(markReadTimer);
	markReadTimer = setTimeout(async () => {
		const upTo = markReadSeq;
		try {
			await Api.markRead(upTo);
			if (state.view && state.view.name === 'notifications')
				setUnread(0);
		} catch (e) {
			showError(e, "Couldn't mark notifications read");
		}
	}, 400);
}

function viewNotifications(main) {
	updateTitle('Notifications • flock');
	let alive = true;
	let cursor = null;
	let io = null;
	let loading = false;
	const list = h('ul.notifications-list');
	const sentinel = h('div.sentinel', { 'aria-hidden': 'true' });
	const status = h('div.feed-status', { role: 'status' }, h('span.spinner', { 'aria-hidden': 'true' }));
	main.append(h('div.card.notifications-page', h('h1.page-title', { text: 'Notifications' }), list, status, sentinel));
	state.notifList = list;

	async function load() {
		if (loading)
			return;
		loading = true;
		try {
			const page = await Api.notifications(cursor);
			if (!alive)
				return;
			const items = itemsOf(page);
			let top = 0;
			for (const n of items) {
				if (n.seq && list.querySelector(`[data-seq="${CSS.escape(String(n.seq))}"]`))
					continue;
				list.append(notificationItem(n));
				top = Math.max(top, Number(n.seq) || 0);
			}
			if (!cursor && top)
				markReadSoon(Math.max(top, state.maxNotifSeq));
			else if (!cursor && typeof page.unread_count === 'number' && page.unread_count === 0)
				setUnread(0);
			cursor = page && page.next_cursor;
			status.replaceChildren();
			if (!list.children.length)
				list.append(h('li.empty',
					h('div.empty-illustration', { 'aria-hidden': 'true' }, icon('heart')),
					h('h2', { text: 'Activity on your posts' }),
					h('p.muted', { text: 'When someone likes or comments on your posts or follows you, you’ll see it here.' })));
			if (!cursor && io)
				io.disconnect();
		} catch (e) {
			status.replaceChildren(h('p.muted', { text: e.text || String(e) }));
		} finally {
			loading = false;
		}
	}
	load().then(() => {
		if (!alive || !cursor)
			return;
		io = new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting) && cursor) load(); }, { rootMargin: PRELOAD_MARGIN });
		io.observe(sentinel);
	});
	return () => {
		alive = false;
		if (io)
			io.disconnect();
	};
}

// ---- search ------------------------------------------------------------------------------------

let searchAbort = null;
let searchTimer = 0;
let searchActive = -1;

function closeSearch() {
	const list = $('search-results');
	const input = $('search-input');
	if (!list)
		return;
	list.hidden = true;
	list.replaceChildren();
	input.setAttribute('aria-expanded', 'false');
	input.removeAttribute('aria-activedescendant');
	searchActive = -1;
}

function setupSearch() {
	const input = $('search-input');
	const list = $('search-results');

	function setActive(i) {
		const opts = [...list.querySelectorAll('[role="option"]')];
		searchActive = opts.length ? (i + opts.length) % opts.length : -1;
		opts.forEach((o, k) => o.setAttribute('aria-selected', String(k === searchActive)));
		if (searchActive >= 0) {
			input.setAttribute('aria-activedescendant', opts[searchActive].id);
			opts[searchActive].scrollIntoView({ block: 'nearest' });
		} else {
			input.removeAttribute('aria-activedescendant');
		}
	}

	function go(name) {
		closeSearch();
		input.value = '';
		input.blur();
		location.hash = `#/u/${encodeURIComponent(name)}`;
	}

	async function run() {
		const q = input.value.trim().replace(/^@/, '').toLowerCase();
		if (searchAbort)
			searchAbort.abort();
		if (!q) {
			closeSearch();
			return;
		}
		searchAbort = new AbortController();
		const signal = searchAbort.signal;
		try {
			const page = await Api.searchUsers(q, signal);
			if (signal.aborted)
				return;
			const users = itemsOf(page, 'users', 'results').filter((u) => usernameOf(u));
			list.replaceChildren();
			users.slice(0, 8).forEach((u, i) => {
				const name = usernameOf(u);
				const li = h('li.search-option', {
					id: `search-opt-${i}`, role: 'option', 'aria-selected': 'false',
					dataset: { username: name },
					on: { mousedown: (e) => { e.preventDefault(); go(name); } },
				}, avatar(u, 'sm'), h('span.search-names', h('span.username', { text: name }),
					u.bio ? h('span.muted', { text: u.bio.slice(0, 40) }) : null));
				list.append(li);
			});
			if (!users.length)
				list.append(h('li.search-none', { text: `No people match “${q}”` }));
			list.hidden = false;
			input.setAttribute('aria-expanded', 'true');
			searchActive = -1;
		} catch (e) {
			if (e.name === 'AbortError')
				return;
			list.replaceChildren(h('li.search-none', { text: e.text || String(e) }));
			list.hidden = false;
			input.setAttribute('aria-expanded', 'true');
		}
	}

	input.addEventListener('input', () => {
		clearTimeout(searchTimer);
		searchTimer = setTimeout(run, SEARCH_DEBOUNCE_MS);
	});
	input.addEventListener('keydown', (e) => {
		const opts = list.querySelectorAll('[role="option"]');
		if (e.key === 'ArrowDown') {
			e.preventDefault();
			if (list.hidden)
				run();
			else
				setActive(searchActive + 1);
		} else if (e.key === 'ArrowUp') {
			e.preventDefault();
			setActive(searchActive - 1);
		} else if (e.key === 'Enter') {
			e.preventDefault();
			if (searchActive >= 0 && opts[searchActive])
				go(opts[searchActive].dataset.username);
			else if (opts.length === 1)
				go(opts[0].dataset.username);
			else {
				const q = input.value.trim().replace(/^@/, '').toLowerCase();
				if (USERNAME_RE.test(q))
					go(q);
			}
		} else if (e.key === 'Escape') {
			closeSearch();
		}
	});
	input.addEventListener('blur', () => setTimeout(closeSearch, 150));
	input.addEventListener('focus', () => { if (input.value.trim()) run(); });
}

// ---------------------------------------------------------------------------------------------------

if (document.readyState === 'loading')
	document.addEventListener('DOMContentLoaded', boot);
else
	boot();

export { state };
