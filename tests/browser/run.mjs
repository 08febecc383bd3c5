// Plays streams in real players inside headless Chromium and prints what each player saw as
// JSON on stdout. Driven by tests/tests/browser.rs:
//
//   node run.mjs SPEC.json
//
// SPEC: {"streams": [{"name", "player": "hls"|"shaka", "url", "seconds", "ads": "regex",
//                     "config": {player options}}],
//        "concurrency": N, "ignoreCertificateErrors": bool}
//
// The page and the players' files come from a small HTTP server on 127.0.0.1 (another origin
// than the proxy's, as on a real site, so CORS is exercised). Chromium is Debian's
// (/usr/bin/chromium, or $CHROMIUM); playwright-core only drives it.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const files = {
  '/player.html': ['text/html', join(here, 'player.html')],
  '/hls.js': ['text/javascript', join(here, 'node_modules/hls.js/dist/hls.min.js')],
  '/shaka.js': ['text/javascript', join(here, 'node_modules/shaka-player/dist/shaka-player.compiled.js')],
};
const cache = new Map();
const server = createServer((req, res) => {
  const f = files[new URL(req.url, 'http://x').pathname];
  if (!f) { res.writeHead(404).end(); return; }
  if (!cache.has(f[1])) cache.set(f[1], readFileSync(f[1]));
  res.writeHead(200, { 'content-type': f[0] }).end(cache.get(f[1]));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const pageBase = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
    // pages play side by side: none of them is a background tab to throttle
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
    // the test's self-signed certificates (HTTPS streams)
    ...(spec.ignoreCertificateErrors ? ['--ignore-certificate-errors'] : []),
  ],
});
const context = await browser.newContext({ ignoreHTTPSErrors: !!spec.ignoreCertificateErrors });

async function play(stream) {
  const page = await context.newPage();
  const console = [];
  const http = [];   // responses >= 400 and failed requests the player made
  page.on('console', (m) => { if (console.length < 200) console.push(`${m.type()}: ${m.text()}`.slice(0, 300)); });
  page.on('pageerror', (e) => console.push(`pageerror: ${e.message}`.slice(0, 300)));
  page.on('requestfailed', (r) => { if (http.length < 200) http.push({ url: r.url(), failure: r.failure()?.errorText }); });
  page.on('response', (r) => {
    if (!r.url().startsWith(pageBase) && r.status() >= 400 && http.length < 200) {
      http.push({ url: r.url(), status: r.status() });
    }
  });
  const q = new URLSearchParams({
    player: stream.player, src: stream.url, ads: stream.ads || '/ads/', cfg: JSON.stringify(stream.config || null),
  });
  await page.goto(`${pageBase}/player.html?${q}`);
  await page.waitForTimeout(stream.seconds * 1000);
  let report;
  try {
    report = await page.evaluate(() => window.report());
  } catch (e) {
    report = { fatal: [{ kind: 'harness', detail: String(e) }] };
  }
  await page.close();
  return { name: stream.name, ...report, http, console: console.slice(-60) };
}

// a small pool: `concurrency` pages at a time
const queue = [...spec.streams];
const results = [];
const workers = Array.from({ length: Math.max(1, spec.concurrency || 4) }, async () => {
  while (queue.length) {
    const s = queue.shift();
    process.stderr.write(`browser: playing ${s.name} (${s.player}) for ${s.seconds} s\n`);
    results.push(await play(s));
  }
});
await Promise.all(workers);
await browser.close();
server.close();
process.stdout.write(JSON.stringify({ results }) + '\n');
