// browser_test.mjs — end-to-end test of flock's bundled web client.
//
// Goal: prove that the page served by a real flockd works for people:
// two users sign up through the UI, A follows B from B's profile page,
// B uploads a photo, A sees it arrive in the feed live (no reload) and
// likes it, and B's notification badge updates live. Then A's stream is
// dropped while B posts again, and on reconnect (?since=) the missed
// post still arrives.
//
// Method: start flockd on a free 127.0.0.1 port with a temporary data
// directory, drive Debian's /usr/bin/chromium through playwright-core
// (no browser download) with two isolated browser contexts, and check
// what a person would see. Content-Security-Policy violations and
// uncaught page errors fail the test. Screenshots go to the artifacts
// directory (printed). Bounded: the whole run is killed after
// OVERALL_TIMEOUT_MS; flockd is always stopped.
//
// Usage: node tests/browser/browser_test.mjs [--flockd PATH] [--url URL]
//        [--artifacts DIR] [--chromium PATH]
//   FLOCKD env is the flockd path when --flockd is not given (default
//   build/release/flockd); FLOCKD_ARGS adds flags to its command line;
//   --url tests an already running server instead of starting flockd.
// Exit status: 0 passed, 1 failed, 2 bad usage or missing prerequisites.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const OVERALL_TIMEOUT_MS = 90_000;
// flockd opens its storage and binds quickly; allow for a slow CI disk.
const SERVER_START_TIMEOUT_MS = 15_000;
// A live event (post, notification) should arrive well within this.
const LIVE_TIMEOUT_MS = 15_000;
// Media processing (libvips, off the scheduler) of a small image.
const MEDIA_READY_TIMEOUT_MS = 30_000;
const STEP_TIMEOUT_MS = 10_000;

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

// ---- arguments ----------------------------------------------------------------

function parseArgs(argv) {
	const a = { flockd: process.env.FLOCKD || '', url: '', artifacts: '', chromium: process.env.CHROMIUM || '/usr/bin/chromium' };
	for (let i = 0; i < argv.length; i++) {
		const k = argv[i];
		const v = argv[i + 1];
		if (k === '--flockd' && v) { a.flockd = v; i++; }
		else if (k === '--url' && v) { a.url = v.replace(/\/$/, ''); i++; }
		else if (k === '--artifacts' && v) { a.artifacts = v; i++; }
		else if (k === '--chromium' && v) { a.chromium = v; i++; }
		else if (!k.startsWith('--') && !a.flockd) a.flockd = k;
		else usage(`unknown argument ${k}`);
	}
	if (!a.flockd)
		a.flockd = path.join(repo, 'build', 'release', 'flockd');
	if (!a.artifacts)
		a.artifacts = process.env.FLOCK_ARTIFACTS || path.join(repo, 'build', 'browser-artifacts');
	return a;
}

function usage(msg) {
	console.error(`browser test: ${msg}`);
	console.error('usage: node tests/browser/browser_test.mjs [--flockd PATH] [--url URL] [--artifacts DIR] [--chromium PATH]');
	process.exit(2);
}

const args = parseArgs(process.argv.slice(2));

// ---- bookkeeping and cleanup ----------------------------------------------------------

const started = Date.now();
let currentStep = 'start';
let flockd = null;
let flockdLog = '';
let dataDir = '';
let browser = null;
let finished = false;
const notes = [];

function log(msg) {
	const s = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
	console.log(`[${s}s] ${msg}`);
}

async function step(name, fn) {
	currentStep = name;
	const t = Date.now();
	const r = await fn();
	log(`ok   ${name} (${Date.now() - t} ms)`);
	return r;
}

class TestFailure extends Error {}
function fail(msg) { throw new TestFailure(msg); }

async function stopFlockd() {
	if (!flockd || flockd.exitCode !== null || flockd.signalCode !== null)
		return;
	const exited = new Promise((r) => flockd.once('exit', r));
	flockd.kill('SIGTERM');
	const t = setTimeout(() => { try { flockd.kill('SIGKILL'); } catch { /* gone */ } }, 3000);
	await exited;
	clearTimeout(t);
}

async function cleanup() {
	if (browser) {
		const b = browser;
		browser = null;
		await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
	}
	await stopFlockd();
	if (dataDir && !process.env.FLOCK_KEEP_DATA)
		fs.rmSync(dataDir, { recursive: true, force: true });
}

function flockdTail() {
	if (!flockdLog)
		return '';
	try {
		const text = fs.readFileSync(flockdLog, 'utf8').trimEnd().split('\n').slice(-25).join('\n');
		return text ? `\n--- last lines of ${flockdLog} ---\n${text}\n---` : '';
	} catch { return ''; }
}

// Pages to photograph when the test fails.
const openPages = [];

async function failureScreenshots() {
	const saved = [];
	for (const [label, page] of openPages) {
		const file = path.join(args.artifacts, `failure-${label}.png`);
		try {
			await Promise.race([page.screenshot({ path: file }), new Promise((_, r) => setTimeout(r, 3000))]);
			saved.push(file);
		} catch { /* the page is gone */ }
	}
	return saved;
}

async function finish(code, message) {
	if (finished)
		return;
	finished = true;
	clearTimeout(overall);
	const shots = code === 0 ? [] : await failureScreenshots();
	await cleanup();
	for (const f of shots)
		console.log(`screenshot at failure: ${f}`);
	for (const n of notes)
		console.log(`note: ${n}`);
	if (code === 0)
		console.log(`browser test: passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
	else
		console.error(`browser test: FAILED at step "${currentStep}": ${message}${flockdTail()}`);
	process.exit(code);
}

const overall = setTimeout(() => {
	finish(1, `timed out after ${OVERALL_TIMEOUT_MS / 1000} s`);
}, OVERALL_TIMEOUT_MS);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
	process.on(sig, () => finish(1, `stopped by ${sig}`));

// ---- a test image, made here -------------------------------------------------------------

const CRC_TABLE = (() => {
	const t = new Uint32Array(256);
	for (let n = 0; n < 256; n++) {
		let c = n;
		for (let k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
		t[n] = c >>> 0;
	}
	return t;
})();

function crc32(buf) {
	let c = 0xffffffff;
	for (const b of buf)
		c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
	return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
	const len = Buffer.alloc(4);
	len.writeUInt32BE(data.length);
	const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
	const crc = Buffer.alloc(4);
	crc.writeUInt32BE(crc32(td));
	return Buffer.concat([len, td, crc]);
}

// A size×size RGB PNG: a sunset (sky gradient, sun, two hills) whose
// palette shifts with `hue`, so two uploads differ in content.
function makePng(size, hue) {
	const raw = Buffer.alloc((size * 3 + 1) * size);
	const sunX = size * 0.62;
	const sunY = size * 0.42;
	const sunR = size * 0.16;
	for (let y = 0; y < size; y++) {
		const row = y * (size * 3 + 1);
		raw[row] = 0; // filter: none
		const t = y / size;
		for (let x = 0; x < size; x++) {
			let r = 255 - 60 * t + hue * 0.2;
			let g = 140 + 60 * t - hue * 0.5;
			let b = 90 + 130 * t + hue;
			const d = Math.hypot(x - sunX, y - sunY);
			if (d < sunR) { r = 255; g = 236; b = 170; }
			else if (d < sunR * 1.6) {
				const k = (d - sunR) / (sunR * 0.6);
				r = r * k + 255 * (1 - k); g = g * k + 220 * (1 - k); b = b * k + 160 * (1 - k);
			}
			const hill1 = size * (0.72 + 0.08 * Math.sin(x / size * Math.PI * 2 + 0.5));
			const hill2 = size * (0.82 + 0.05 * Math.sin(x / size * Math.PI * 3 + 2));
			if (y > hill2) { r = 40; g = 60 + hue * 0.2; b = 90; }
			else if (y > hill1) { r = 90; g = 70; b = 120 + hue * 0.3; }
			const o = row + 1 + x * 3;
			raw[o] = Math.max(0, Math.min(255, r));
			raw[o + 1] = Math.max(0, Math.min(255, g));
			raw[o + 2] = Math.max(0, Math.min(255, b));
		}
	}
	const ihdr = Buffer.alloc(13);
	ihdr.writeUInt32BE(size, 0);
	ihdr.writeUInt32BE(size, 4);
	ihdr[8] = 8;  // bit depth
	ihdr[9] = 2;  // colour type: RGB
	ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
	return Buffer.concat([
		Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
		chunk('IHDR', ihdr),
		chunk('IDAT', zlib.deflateSync(raw)),
		chunk('IEND', Buffer.alloc(0)),
	]);
}

// ---- flockd ---------------------------------------------------------------------------------

function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.unref();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

function flockdHelp() {
	return new Promise((resolve) => {
		let text = '';
		const p = spawn(args.flockd, ['--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
		p.stdout.on('data', (d) => { text += d; });
		p.stderr.on('data', (d) => { text += d; });
		const t = setTimeout(() => p.kill('SIGKILL'), 5000);
		p.on('error', () => { clearTimeout(t); resolve(''); });
		p.on('exit', () => { clearTimeout(t); resolve(text); });
	});
}

async function startFlockd() {
	if (!fs.existsSync(args.flockd))
		usage(`no flockd binary at ${args.flockd} (build it: make MODE=release programs)`);
	const port = await freePort();
	dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flock-browser-'));
	fs.mkdirSync(args.artifacts, { recursive: true });
	flockdLog = path.join(args.artifacts, 'flockd.log');
	const out = fs.openSync(flockdLog, 'w');
	const extra = (process.env.FLOCKD_ARGS || '').split(/\s+/).filter(Boolean);
	const argv = ['--listen', `127.0.0.1:${port}`, '--data', dataDir];
	// Options this flockd knows (from --help): serve this tree's page,
	// and hash passwords cheaply (a test-only switch behind FLOCK_TEST=1).
	const help = await flockdHelp();
	if (help.includes('--web-dir'))
		argv.push('--web-dir', path.join(repo, 'gateway', 'web'));
	if (help.includes('--insecure-fast-passwords'))
		argv.push('--insecure-fast-passwords');
	argv.push(...extra);
	log(`start ${args.flockd} ${argv.join(' ')}`);
	flockd = spawn(args.flockd, argv, {
		cwd: repo,
		env: { ...process.env, FLOCK_TEST: '1' },
		stdio: ['ignore', out, out],
	});
	fs.closeSync(out);
	let exited = null;
	flockd.on('exit', (code, sig) => { exited = sig || code; });
	const base = `http://127.0.0.1:${port}`;
	const deadline = Date.now() + SERVER_START_TIMEOUT_MS;
	while (Date.now() < deadline) {
		if (exited !== null)
			fail(`flockd exited (${exited}) before serving`);
		try {
			const r = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
			if (r.ok)
				return base;
		} catch { /* not listening yet */ }
		await new Promise((r) => setTimeout(r, 100));
	}
	fail(`flockd did not answer GET /healthz within ${SERVER_START_TIMEOUT_MS / 1000} s`);
}

// ---- pages -----------------------------------------------------------------------------------

// Every page records CSP violations and uncaught errors; any fails the test.
const pageProblems = [];

async function newUserPage(label) {
	const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
	const page = await context.newPage();
	page.setDefaultTimeout(STEP_TIMEOUT_MS);
	openPages.push([label, page]);
	await page.addInitScript(() => {
		window.__csp = [];
		document.addEventListener('securitypolicyviolation', (e) => {
			window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile || ''}:${e.lineNumber || ''})`);
		});
	});
	page.on('pageerror', (e) => pageProblems.push(`${label}: uncaught ${e.message}`));
	page.on('console', (m) => {
		const t = m.text();
		if (/Content Security Policy/i.test(t))
			pageProblems.push(`${label}: ${t}`);
		else if (m.type() === 'error')
			notes.push(`${label} console: ${t}`);
	});
	return page;
}

async function signUp(page, base, username, label) {
	await page.goto(`${base}/`);
	await page.locator('.auth-form').waitFor();
	await page.locator('.auth-switch button').click();
	await page.getByLabel('Username').fill(username);
	await page.getByLabel('Email').fill(`${username}@example.org`);
	await page.getByLabel('Password').fill('correct horse battery');
	await page.locator('.auth-form button[type="submit"]').click();
	const ok = page.locator('#topbar:not([hidden])');
	const err = page.locator('#auth-error:not([hidden])');
	await Promise.race([ok.waitFor(), err.waitFor()]);
	if (await err.isVisible())
		fail(`${label} could not sign up: ${await err.textContent()}`);
	await page.locator('#live-status[data-status="live"]').waitFor({ timeout: LIVE_TIMEOUT_MS })
		.catch(async () => fail(`${label}'s live stream did not connect (status ${await page.locator('#live-status').getAttribute('data-status')})`));
}

async function badgeCount(page) {
	const b = page.locator('#notif-badge');
	if (!(await b.isVisible()))
		return 0;
	return Number((await b.textContent()).replace(/\D/g, '')) || 0;
}

async function waitBadgeAbove(page, n, what) {
	try {
		await page.waitForFunction((min) => {
			const b = document.getElementById('notif-badge');
			return b && !b.hidden && (parseInt(b.textContent, 10) || 0) > min;
		}, n, { timeout: LIVE_TIMEOUT_MS });
	} catch {
		fail(`B's notification badge did not rise above ${n} after ${what} within ${LIVE_TIMEOUT_MS / 1000} s (shows ${await badgeCount(page)})`);
	}
	return badgeCount(page);
}

async function assertNoReload(page, label) {
	const marker = await page.evaluate(() => window.__notReloaded === true);
	if (!marker)
		fail(`${label}'s page was reloaded (the update was not live)`);
}

async function share(page, png, name, caption) {
	await page.locator('#nav-new').click();
	const dlg = page.locator('#composer[open]');
	await dlg.waitFor();
	await page.locator('#composer-file').setInputFiles({ name, mimeType: 'image/png', buffer: png });
	await page.getByLabel('Caption').fill(caption);
	await dlg.getByRole('button', { name: 'Share' }).click();
	const err = dlg.locator('.form-error:not([hidden])');
	await Promise.race([page.locator('#composer:not([open])').waitFor({ state: 'attached', timeout: 20_000 }), err.waitFor({ timeout: 20_000 })]);
	if (await err.isVisible().catch(() => false))
		fail(`B's upload failed: ${await err.textContent()}`);
}

// ---- the scenario -----------------------------------------------------------------------------

async function main() {
	const { chromium } = await import('playwright-core').catch(() => {
		usage(`playwright-core is not installed: run npm ci --prefix ${path.relative(process.cwd(), here) || '.'}`);
	});
	if (!fs.existsSync(args.chromium))
		usage(`no Chromium at ${args.chromium} (Debian: apt-get install chromium)`);

	const base = args.url || await step('start flockd', startFlockd);
	log(`server ${base}`);

	browser = await step('launch chromium', () => chromium.launch({
		executablePath: args.chromium,
		headless: true,
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
			'--disable-background-networking', '--disable-component-update', '--disable-sync',
			'--disable-dev-shm-usage'],
	}));

	const suffix = Date.now().toString(36).slice(-5);
	const nameA = `ana_${suffix}`;
	const nameB = `ben_${suffix}`;
	const caption1 = `Golden hour over the hills #sunset ${suffix}`;
	const caption2 = `Second light, posted while you were away ${suffix}`;

	const pageA = await newUserPage('A');
	const pageB = await newUserPage('B');
	await step('the page loads with a strict CSP', async () => {
		const r = await pageA.goto(`${base}/`);
		if (!r || !r.ok())
			fail(`GET / answered ${r ? r.status() : 'nothing'}`);
		const csp = r.headers()['content-security-policy'] || '';
		if (!csp)
			notes.push('GET / sent no Content-Security-Policy header');
		else
			log(`     CSP: ${csp}`);
		await pageA.locator('.auth-form').waitFor();
	});
	await step('A signs up through the UI', () => signUp(pageA, base, nameA, 'A'));
	await step('B signs up through the UI', () => signUp(pageB, base, nameB, 'B'));
	await pageB.evaluate(() => { window.__notReloaded = true; });

	await step("A finds B with search and opens B's profile", async () => {
		const input = pageA.locator('#search-input');
		await input.fill(nameB.slice(0, 6));
		const option = pageA.locator(`#search-results [role="option"][data-username="${nameB}"]`);
		try {
			await option.waitFor({ timeout: 5000 });
			await option.click();
		} catch {
			notes.push(`search for "${nameB.slice(0, 6)}" did not list ${nameB} within 5 s; opened the profile by URL`);
			await pageA.evaluate((n) => { location.hash = `#/u/${n}`; }, nameB);
		}
		await pageA.locator('.profile-name', { hasText: nameB }).waitFor();
	});

	await step("A follows B from B's profile page", async () => {
		const btn = pageA.locator('.follow-btn');
		await btn.waitFor();
		if ((await btn.textContent()).trim() !== 'Follow')
			fail(`the follow button reads "${await btn.textContent()}" before following`);
		await btn.click();
		await pageA.locator('.follow-btn[aria-pressed="true"]', { hasText: 'Following' }).waitFor()
			.catch(() => fail('the follow button did not turn to "Following"'));
		const followers = (await pageA.locator('[data-stat="followers"] strong').textContent()).trim();
		if (followers !== '1')
			fail(`B's profile shows ${followers} followers after A followed, expected 1`);
	});

	let badgeBefore = 0;
	await step("B's badge shows A's follow live", async () => {
		badgeBefore = await waitBadgeAbove(pageB, 0, 'the follow');
	});

	await step('A opens the feed and waits for the stream', async () => {
		await pageA.locator('#nav-home').click();
		await pageA.locator('.feed-list').waitFor();
		await pageA.waitForFunction(() => window.flock && window.flock.state.feed.loaded, null, { timeout: STEP_TIMEOUT_MS });
		await pageA.locator('#live-status[data-status="live"]').waitFor({ timeout: LIVE_TIMEOUT_MS });
		await pageA.evaluate(() => { window.__notReloaded = true; });
	});

	const png1 = makePng(480, 0);
	await step('B uploads a photo with a caption', () => share(pageB, png1, 'sunset.png', caption1));

	const cardA = pageA.locator('article.post', { hasText: caption1 });
	await step("B's post appears at the top of A's feed without a reload", async () => {
		await cardA.waitFor({ timeout: LIVE_TIMEOUT_MS })
			.catch(() => fail(`A's feed did not show "${caption1}" within ${LIVE_TIMEOUT_MS / 1000} s (no feed.post event?)`));
		await assertNoReload(pageA, 'A');
		const first = await pageA.locator('.feed-list article.post').first().textContent();
		if (!first.includes(caption1))
			fail("B's post is not the first in A's feed");
	});

	await step("the photo turns ready and loads in A's feed", async () => {
		try {
			await pageA.waitForFunction((cap) => {
				const card = [...document.querySelectorAll('article.post')].find((a) => a.textContent.includes(cap));
				const img = card && card.querySelector('.post-media[data-state="ready"] img');
				return img && img.complete && img.naturalWidth > 0;
			}, caption1, { timeout: MEDIA_READY_TIMEOUT_MS });
		} catch {
			const state = await cardA.locator('.post-media').getAttribute('data-state');
			fail(`the photo did not load in A's feed within ${MEDIA_READY_TIMEOUT_MS / 1000} s (media state: ${state})`);
		}
		const alt = await cardA.locator('.post-media img').getAttribute('alt');
		if (!alt || !alt.includes('Golden hour'))
			fail(`the photo's alt text is "${alt}", expected the caption`);
		const srcset = await cardA.locator('.post-media img').getAttribute('srcset');
		if (!srcset)
			notes.push('the post image has no srcset (no small/medium/large variants?)');
		const counts = await pageA.evaluate(() => window.flock.state.counts);
		if (!counts.postUpdated)
			notes.push("A's photo turned ready by re-reading the post/media over REST: no post.updated event reached A");
	});

	await step('A likes the post', async () => {
		await cardA.getByRole('button', { name: 'Like', exact: true }).click();
		await cardA.locator('.like-btn[aria-pressed="true"]').waitFor();
		await cardA.locator('.likes', { hasText: /^1 like$/ }).waitFor()
			.catch(async () => fail(`the like count reads "${await cardA.locator('.likes').textContent()}", expected "1 like"`));
	});

	await step("B's notification badge updates live", async () => {
		await waitBadgeAbove(pageB, badgeBefore, "A's like");
		await assertNoReload(pageB, 'B');
	});

	await step('B reads the notifications and the badge clears', async () => {
		await pageB.locator('#nav-notifications').click();
		await pageB.locator('.notification', { hasText: 'liked your post' }).first().waitFor()
			.catch(() => fail(`B's notifications list has no "liked your post" entry`));
		await pageB.locator('.notification', { hasText: 'started following you' }).first().waitFor()
			.catch(() => fail(`B's notifications list has no "started following you" entry`));
		await pageB.locator('#notif-badge').waitFor({ state: 'hidden', timeout: STEP_TIMEOUT_MS })
			.catch(() => fail('the badge did not clear after B opened the notifications'));
		await pageB.screenshot({ path: path.join(args.artifacts, 'notifications.png') });
	});

	await step("A's stream drops; B posts again; A catches up with ?since=", async () => {
		await pageA.evaluate(() => window.flock.live.pause());
		await share(pageB, makePng(480, 90), 'dusk.png', caption2);
		await pageA.waitForTimeout(500);
		await pageA.evaluate(() => window.flock.live.resume());
		await pageA.locator('article.post', { hasText: caption2 }).waitFor({ timeout: LIVE_TIMEOUT_MS })
			.catch(() => fail(`after reconnecting, A's feed did not show the post made while A was away ("${caption2}")`));
		await assertNoReload(pageA, 'A');
	});

	await step('screenshots', async () => {
		// Both photos ready and drawn, so the picture shows what people see.
		await pageA.waitForFunction(() => [...document.querySelectorAll('.post-media')].every((b) => {
			const img = b.querySelector('img');
			return b.dataset.state === 'ready' && img && img.complete && b.classList.contains('loaded');
		}), null, { timeout: MEDIA_READY_TIMEOUT_MS / 2 }).catch(() => notes.push('not every photo in A\'s feed was ready for the screenshot'));
		await pageA.evaluate(() => window.scrollTo(0, 0));
		await pageA.waitForTimeout(700); // let the arrival animation finish
		const feed = path.join(args.artifacts, 'feed.png');
		await pageA.screenshot({ path: feed, fullPage: true });
		await pageB.evaluate((n) => { location.hash = `#/u/${n}`; }, nameB);
		await pageB.locator('.grid .tile').first().waitFor().catch(() => {});
		await pageB.waitForTimeout(300);
		await pageB.screenshot({ path: path.join(args.artifacts, 'profile.png') });
		log(`     live events A ${JSON.stringify(await pageA.evaluate(() => window.flock.state.counts))}, B ${JSON.stringify(await pageB.evaluate(() => window.flock.state.counts))}`);
		log(`     screenshot ${feed}`);
		log(`     screenshots ${path.join(args.artifacts, 'profile.png')}, ${path.join(args.artifacts, 'notifications.png')}`);
	});

	await step('no CSP violations or page errors', async () => {
		for (const [label, page] of [['A', pageA], ['B', pageB]]) {
			const csp = await page.evaluate(() => window.__csp || []);
			for (const c of csp)
				pageProblems.push(`${label}: CSP ${c}`);
		}
		if (pageProblems.length)
			fail(pageProblems.join('; '));
	});
}

main().then(() => finish(0), (e) => {
	const msg = e instanceof TestFailure ? e.message : (e && e.stack) || String(e);
	finish(1, msg);
});
