// Drives the operator console (/ui/ on the admin listener) in headless Chromium the way an
// operator would, and prints what each step saw as JSON on stdout. Driven by
// tests/tests/console.rs:
//
//   node console.mjs SPEC.json
//
// SPEC: {"admin": "http://127.0.0.1:PORT", "token", "tenant" (personalizing, for the
//        preview), "session": {"tenant", "token"}, "upload": {"tenant", "wasm": path},
//        "screenshots": dir or null}
//
// Screenshots of each view go to `screenshots` (docs/console/), so the docs show the
// console as it is.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = { steps: {}, console: [], http: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.on('console', (m) => { if (out.console.length < 200) out.console.push(`${m.type()}: ${m.text()}`.slice(0, 300)); });
page.on('pageerror', (e) => out.console.push(`pageerror: ${e.message}`.slice(0, 300)));
page.on('response', (r) => { if (r.status() >= 400 && out.http.length < 200) out.http.push({ url: r.url(), status: r.status() }); });

async function shot(name) {
  if (!spec.screenshots) return;
  mkdirSync(spec.screenshots, { recursive: true });
  // the viewport, not the whole page: a session's manifest diff runs long
  await page.screenshot({ path: join(spec.screenshots, `${name}.png`) });
}
const text = (sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent.trim()));
const api = async (path, token) => {
  const r = await fetch(`${spec.admin}${path}`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  return { status: r.status, body: await r.text() };
};

async function logIn(token) {
  await page.fill('#token', token);
  await page.click('#login-form button');
}

try {
  // nothing without a token: the page asks, the API refuses
  const res = await page.goto(`${spec.admin}/ui/`);
  out.steps.page = {
    status: res.status(),
    csp: res.headers()['content-security-policy'] || null,
    loginShown: await page.isVisible('#login'),
    navShown: await page.isVisible('#nav'),
  };
  out.steps.noToken = {
    edge: (await api('/edge')).status,
    tenants: (await api('/tenants')).status,
    session: (await api(`/tenants/${spec.session.tenant}/sessions/${spec.session.token}`)).status,
  };
  await logIn('not-the-token');
  await page.waitForSelector('#login-error:not(:empty)', { timeout: 10000 });
  out.steps.wrongToken = {
    error: (await text('#login-error'))[0],
    navShown: await page.isVisible('#nav'),
    tenantRows: (await text('#tenants-table tbody tr')).length,
    edge: (await api('/edge', 'not-the-token')).status,
  };

  // the tenants
  await logIn(spec.token);
  await page.waitForSelector('#tenants-table tbody tr', { timeout: 10000 });
  await page.waitForTimeout(7000); // two metrics samples: rates
  const tenantRows = () => page.$$eval('#tenants-table tbody tr', (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent.trim())));
  out.steps.tenants = {
    ids: await page.$$eval('#tenants-table tbody tr', (rs) => rs.map((r) => r.dataset.tenant)),
    rows: await tenantRows(),
  };

  // plugins: a bad upload is refused before anything is deployed; a good one is checked,
  // deployed, and rolled back
  const before = JSON.parse((await api('/tenants', spec.token)).body).find((t) => t.tenant === spec.upload.tenant);
  await page.click('#nav a[href="#plugins"]');
  await page.selectOption('#plugin-tenant', spec.upload.tenant);
  const drop = async (bytes, name) => {
    const dt = await page.evaluateHandle(({ b64, name }) => {
      const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const d = new DataTransfer();
      d.items.add(new File([bin], name, { type: 'application/wasm' }));
      return d;
    }, { b64: Buffer.from(bytes).toString('base64'), name });
    await page.dispatchEvent('#drop', 'drop', { dataTransfer: dt });
  };
  await drop(Buffer.from('not a component'), 'bad.wasm');
  await page.waitForSelector('#check-error', { timeout: 30000 });
  out.steps.badUpload = {
    error: (await text('#check-error'))[0],
    deployEnabled: await page.isEnabled('#deploy'),
    active: JSON.parse((await api('/tenants', spec.token)).body).find((t) => t.tenant === spec.upload.tenant).active,
  };
  await drop(readFileSync(spec.upload.wasm), spec.upload.wasm.split('/').pop());
  await page.waitForSelector('#check-ok', { timeout: 60000 });
  out.steps.check = { result: (await text('#check-ok'))[0], deployEnabled: await page.isEnabled('#deploy') };
  await shot('plugins-check');
  await page.click('#deploy');
  await page.waitForFunction(() => /deployed/.test(document.querySelector('#plugin-message').textContent), null, { timeout: 60000 });
  const afterDeploy = JSON.parse((await api('/tenants', spec.token)).body).find((t) => t.tenant === spec.upload.tenant);
  out.steps.deploy = { message: (await text('#plugin-message'))[0], before: before.active, after: afterDeploy.active, history: (await text('#history tbody tr')).length };
  await shot('plugins');
  await page.click('#rollback');
  await page.waitForFunction(() => /rolled back/.test(document.querySelector('#plugin-message').textContent), null, { timeout: 30000 });
  out.steps.rollback = {
    message: (await text('#plugin-message'))[0],
    after: JSON.parse((await api('/tenants', spec.token)).body).find((t) => t.tenant === spec.upload.tenant).active,
  };

  // the session inspector
  await page.click('#nav a[href="#sessions"]');
  await page.selectOption('#session-tenant', spec.session.tenant);
  await page.fill('#session-key', spec.session.token);
  await page.click('#session-form button');
  await page.waitForSelector('#session-id', { timeout: 10000 });
  out.steps.session = {
    id: (await text('#session-id'))[0],
    mode: (await text('#session-mode'))[0],
    breaks: await page.$$eval('.break', (bs) => bs.map((b) => ({
      id: b.dataset.break,
      ads: [...b.querySelectorAll('tr.ad')].map((r) => [...r.cells].map((c) => c.textContent.trim())),
      beacons: [...b.querySelectorAll('.beacons')].map((p) => p.textContent.trim()),
    }))),
    manifests: (await text('#manifest-pick option')).length,
    diffLines: await page.$$eval('#diff-box tr.added, #diff-box tr.removed, #diff-box tr.changed', (r) => r.length),
  };
  // what the API answered, for diagnosing a failure (the bodies trimmed)
  const raw = await api(`/tenants/${spec.session.tenant}/sessions/${spec.session.token}`, spec.token);
  out.steps.session.api = { status: raw.status, body: raw.body.slice(0, 4000) };
  await shot('session');

  // the preview player, beside the same stream through a pass-through tenant
  await page.click('#nav a[href="#preview"]');
  await page.selectOption('#preview-tenant', spec.tenant);
  await page.selectOption('#preview-player', 'hls');
  await page.click('#preview-form button');
  await page.waitForTimeout(spec.previewSeconds * 1000);
  out.steps.preview = await page.evaluate(() => window.consoleReport());
  out.steps.preview.timelineAds = await page.$$eval('#timeline .seg.ad', (s) => s.length);
  out.steps.preview.compareWith = await page.$eval('#preview-compare', (s) => s.value);
  await shot('preview');
  // and in Shaka, the DASH stream (ad periods)
  await page.fill('#preview-path', '/live/dash/manifest.mpd');
  await page.selectOption('#preview-player', 'shaka');
  await page.click('#preview-form button');
  await page.waitForTimeout(spec.previewSeconds * 1000);
  out.steps.previewShaka = await page.evaluate(() => window.consoleReport());
  out.steps.previewShaka.timelineAds = await page.$$eval('#timeline .seg.ad', (s) => s.length);

  // the tenants again, while the preview's two players play: live rates
  await page.click('#nav a[href="#tenants"]');
  await page.waitForTimeout(6500);
  out.steps.tenantsWatched = await tenantRows();
  await shot('tenants');

  // the event view
  await page.click('#nav a[href="#events"]');
  await page.waitForTimeout(4000);
  out.steps.events = await page.$$eval('.chart-box', (cs) => cs.map((c) => ({
    chart: c.dataset.chart, value: parseFloat(c.querySelector('.value').textContent), points: c.querySelectorAll('polyline').length,
  })));
  await shot('events');

  // logging out forgets the token: nothing shown until one is given again
  await page.click('#logout');
  out.steps.logout = {
    loginShown: await page.isVisible('#login'),
    stored: await page.evaluate(() => sessionStorage.length),
    tenantRows: (await text('#tenants-table tbody tr')).length,
  };
} catch (e) {
  out.fatal = String(e && e.stack || e);
  await shot('failure').catch(() => {});
}
await browser.close();
process.stdout.write(JSON.stringify(out));
