// ui.js — small DOM helpers for the web client: an element builder,
// icons, avatars, relative times and toasts.
//
// Everything is built with createElement and textContent, never
// innerHTML with user text, so captions and usernames cannot inject
// markup. No inline style attributes either: the page's CSP forbids
// them; looks come from style.css classes.

// h('div.card#id', {attrs, on: {click}}, ...children)
export function h(tag, props, ...children) {
	const m = /^([a-z0-9-]+)?((?:[.#][\w-]+)*)$/i.exec(tag);
	const el = document.createElement((m && m[1]) || 'div');
	if (m && m[2])
		for (const part of m[2].match(/[.#][\w-]+/g)) {
			if (part[0] === '.')
				el.classList.add(part.slice(1));
			else
				el.id = part.slice(1);
		}
	if (props && (typeof props !== 'object' || props instanceof Node || Array.isArray(props))) {
		children.unshift(props);
		props = null;
	}
	if (props)
		for (const [k, v] of Object.entries(props)) {
			if (v === undefined || v === null || v === false)
				continue;
			if (k === 'on')
				for (const [ev, fn] of Object.entries(v))
					el.addEventListener(ev, fn);
			else if (k === 'class')
				el.className += (el.className ? ' ' : '') + v;
			else if (k === 'text')
				el.textContent = v;
			else if (k === 'dataset')
				Object.assign(el.dataset, v);
			else if (k in el && typeof v !== 'string' && k !== 'list')
				el[k] = v;
			else
				el.setAttribute(k, v === true ? '' : String(v));
		}
	append(el, children);
	return el;
}

function append(el, children) {
	for (const c of children) {
		if (c === null || c === undefined || c === false)
			continue;
		if (Array.isArray(c))
			append(el, c);
		else
			el.append(c instanceof Node ? c : String(c));
	}
}

// ---- icons (24×24 stroke paths, drawn here so no file is fetched) -------

const SVG = 'http://www.w3.org/2000/svg';
const ICONS = {
	home: 'M3 10.5 12 3l9 7.5V20a1 1 0 0 1-1 1h-5v-6h-6v6H4a1 1 0 0 1-1-1z',
	plus: 'M12 5v14M5 12h14',
	square: 'M5 3h14a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z',
	heart: 'M12 20.5s-7.5-4.6-9.3-9.2C1.4 8 3.3 4.5 6.9 4.5c2.1 0 3.6 1.1 5.1 3 1.5-1.9 3-3 5.1-3 3.6 0 5.5 3.5 4.2 6.8-1.8 4.6-9.3 9.2-9.3 9.2z',
	comment: 'M20.7 16.2A9 9 0 1 0 17 20l3.8 1-1-3.7z',
	search: 'M10.5 18a7.5 7.5 0 1 1 0-15 7.5 7.5 0 0 1 0 15zM16 16l5 5',
	user: 'M12 12a4.5 4.5 0 1 0 0-9 4.5 4.5 0 0 0 0 9zM3.5 21a8.5 8.5 0 0 1 17 0',
	logout: 'M15 4h3a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-3M10 17l5-5-5-5M15 12H3',
	close: 'M6 6l12 12M18 6 6 18',
	more: 'M5 12h.01M12 12h.01M19 12h.01',
	image: 'M4 5h16a1 1 0 0 1 1 1v12a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1zM3 16l5-5 4 4 3-3 6 6M15.5 9.5h.01',
	grid: 'M4 4h6v6H4zM14 4h6v6h-6zM4 14h6v6H4zM14 14h6v6h-6z',
	chevronLeft: 'M15 5l-7 7 7 7',
	chevronRight: 'M9 5l7 7-7 7',
	trash: 'M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3',
	bell: 'M18 16V11a6 6 0 0 0-12 0v5l-2 2h16zM10 21h4',
};

export function icon(name, cls) {
	const svg = document.createElementNS(SVG, 'svg');
	svg.setAttribute('viewBox', '0 0 24 24');
	svg.setAttribute('aria-hidden', 'true');
	svg.setAttribute('focusable', 'false');
	svg.setAttribute('class', `icon icon-${name}${cls ? ' ' + cls : ''}`);
	const p = document.createElementNS(SVG, 'path');
	p.setAttribute('d', ICONS[name] || '');
	svg.append(p);
	return svg;
}

// ---- people --------------------------------------------------------------

export function usernameOf(u) {
	if (!u)
		return '';
	if (typeof u === 'string')
		return u;
	return u.username || '';
}

function hashString(s) {
	let x = 2166136261;
	for (let i = 0; i < s.length; i++)
		x = Math.imul(x ^ s.charCodeAt(i), 16777619);
	return x >>> 0;
}

// A round avatar: the profile picture, or the initial on a colour drawn
// from the username.
export function avatar(user, size = 'sm') {
	const name = usernameOf(user) || '?';
	const url = user && typeof user === 'object' ? user.profile_pic_url : '';
	const wrap = h(`span.avatar.avatar-${size}`, { 'aria-hidden': 'true' });
	if (url) {
		wrap.append(h('img', { src: url, alt: '', loading: 'lazy', decoding: 'async' }));
	} else {
		wrap.classList.add(`tint-${hashString(name) % 8}`);
		wrap.append(h('span.initial', { text: name.replace(/[^a-z0-9]/gi, '').charAt(0).toUpperCase() || '?' }));
	}
	return wrap;
}

export function userLink(user, cls = 'username') {
	const name = usernameOf(user);
	return h(`a.${cls}`, { href: `#/u/${encodeURIComponent(name)}`, text: name });
}

// ---- numbers and times ---------------------------------------------------

export function count(n, one, many) {
	const v = Number(n) || 0;
	return `${compact(v)} ${v === 1 ? one : many}`;
}

export function compact(v) {
	if (v < 10000)
		return v.toLocaleString('en-US');
	if (v < 1e6)
		return `${(v / 1e3).toFixed(v < 1e5 ? 1 : 0).replace(/\.0$/, '')}K`;
	return `${(v / 1e6).toFixed(1).replace(/\.0$/, '')}M`;
}

export function timeAgo(iso) {
	const t = Date.parse(iso);
	if (!t)
		return '';
	const s = Math.max(0, (Date.now() - t) / 1000);
	if (s < 45)
		return 'just now';
	if (s < 3600)
		return `${Math.round(s / 60)}m`;
	if (s < 86400)
		return `${Math.round(s / 3600)}h`;
	if (s < 7 * 86400)
		return `${Math.round(s / 86400)}d`;
	return new Date(t).toLocaleDateString(undefined, { month: 'short', day: 'numeric', year: s > 300 * 86400 ? 'numeric' : undefined });
}

export function timeEl(iso) {
	if (!iso)
		return null;
	const el = h('time', { datetime: iso, title: new Date(iso).toLocaleString(), text: timeAgo(iso) });
	return el;
}

// ---- toasts --------------------------------------------------------------

// Error toasts stay longer: people read them.
const TOAST_MS = 3500;
const TOAST_ERROR_MS = 7000;

export function toast(message, kind = 'info') {
	const region = document.getElementById(kind === 'error' ? 'alerts' : 'toasts');
	if (!region)
		return;
	const t = h(`div.toast.toast-${kind}`, h('span.toast-text', { text: message }),
		h('button.toast-close', { type: 'button', 'aria-label': 'Dismiss', on: { click: () => t.remove() } }, icon('close')));
	region.append(t);
	setTimeout(() => t.classList.add('toast-out'), (kind === 'error' ? TOAST_ERROR_MS : TOAST_MS) - 300);
	setTimeout(() => t.remove(), kind === 'error' ? TOAST_ERROR_MS : TOAST_MS);
}

// Shows an error from the API (problem+json title/detail) or anything else.
export function showError(e, context) {
	if (e && e.name === 'AbortError')
		return;
	const text = e && e.text ? e.text : (e && e.message) || String(e);
	toast(context ? `${context} — ${text}` : text, 'error');
	if (!(e && e.status))
		console.error(e);
}

// Renders caption text with #hashtags and @mentions emphasised.
export function richText(text) {
	const frag = document.createDocumentFragment();
	const re = /([#@][\p{L}\p{N}_.]+)/gu;
	let last = 0;
	for (const m of String(text || '').matchAll(re)) {
		if (m.index > last)
			frag.append(text.slice(last, m.index));
		if (m[0][0] === '@')
			frag.append(h('a.mention', { href: `#/u/${encodeURIComponent(m[0].slice(1).toLowerCase())}`, text: m[0] }));
		else
			frag.append(h('span.hashtag', { text: m[0] }));
		last = m.index + m[0].length;
	}
	if (last < String(text || '').length)
		frag.append(text.slice(last));
	return frag;
}
