// The Manifold operator console. No framework, no build step: the admin API does the work
// and this page shows it. Everything shown comes from authenticated calls; nothing is
// inserted as HTML (text nodes only), so a tenant's data cannot script the page.
'use strict';

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = 'manifold-admin-token';
const SAMPLE_MS = 3000;
const KEEP = 200; // samples: 10 minutes

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

const state = { edge: null, samples: [], timer: null, players: [] };

// ---- the admin API ----
class Unauthorized extends Error {}

async function api(path, opts = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY) || '';
  const headers = Object.assign({ Authorization: `Bearer ${token}` }, opts.headers || {});
  const res = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store' }));
  if (res.status === 401) {
    logout('The token was refused (401).');
    throw new Unauthorized('401');
  }
  return res;
}

async function apiJson(path, opts) {
  const res = await api(path, opts);
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { body = null; }
  if (!res.ok) {
    const msg = body && body.error ? body.error : text.trim();
    throw new Error(`${res.status}: ${msg}`);
  }
  return body;
}

// ---- log in / out ----
function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(state.timer);
  state.timer = null;
  state.edge = null;
  state.samples = [];
  stopPlayers();
  for (const v of document.querySelectorAll('.view')) v.hidden = true;
  for (const t of document.querySelectorAll('tbody')) t.replaceChildren();
  for (const id of ['#session-out', '#check-result', '#charts', '#timeline']) $(id).replaceChildren();
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
}

async function login(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    state.edge = await apiJson('/edge');
  } catch (e) {
    if (!(e instanceof Unauthorized)) logout(`The admin API did not answer: ${e.message}`);
    return;
  }
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  $('#who').textContent = state.edge.operator ? 'operator' : `tenant ${state.edge.tenants.map((t) => t.id).join(', ')}`;
  fillTenantSelects();
  await sample();
  state.timer = setInterval(() => sample().catch(() => {}), SAMPLE_MS);
  route();
}

// ---- metrics: Prometheus text, sampled ----
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
    out.push({ name: m[1], labels, value: parseFloat(m[3]) });
  }
  return out;
}

async function sample() {
  if (!state.edge || !state.edge.operator) return; // the metrics are the operator's
  const res = await api('/metrics');
  if (!res.ok) return;
  state.samples.push({ at: Date.now(), metrics: parseMetrics(await res.text()) });
  if (state.samples.length > KEEP) state.samples.shift();
  if (!$('#view-tenants').hidden) renderTenants();
  if (!$('#view-events').hidden) renderEvents();
}

// sum of a metric's samples matching `where` (labels), grouped by label `by` (or all)
function sum(metrics, name, where = {}, by = null) {
  const out = {};
  for (const m of metrics) {
    if (m.name !== name) continue;
    if (!Object.entries(where).every(([k, v]) => m.labels[k] === v)) continue;
    const key = by ? m.labels[by] : '';
    out[key] = (out[key] || 0) + m.value;
  }
  return by ? out : (out[''] || 0);
}

// the last sample and the one `span` samples before it (a window for rates)
function window2(span = 5) {
  const s = state.samples;
  if (!s.length) return null;
  const last = s[s.length - 1];
  const first = s[Math.max(0, s.length - 1 - span)];
  return { first, last, secs: Math.max(0.001, (last.at - first.at) / 1000) };
}

function quantile(buckets, q) {
  // buckets: [[le, cumulative count]] sorted; linear inside the bucket
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (!isFinite(le)) return prevLe;
      const inBucket = count - prevCount;
      return prevLe + (le - prevLe) * (inBucket ? (rank - prevCount) / inBucket : 1);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

function pluginBuckets(metrics, tenant) {
  const b = {};
  for (const m of metrics) {
    if (m.name === 'manifold_plugin_duration_seconds_bucket' && m.labels.tenant === tenant) {
      b[m.labels.le] = m.value;
    }
  }
  return Object.entries(b).map(([le, v]) => [le === '+Inf' ? Infinity : parseFloat(le), v]).sort((x, y) => x[0] - y[0]);
}

function delta(now, then) {
  // cumulative series over a window (a counter reset shows as the new count)
  return now.map(([le, v], i) => [le, Math.max(0, v - ((then[i] && then[i][0] === le) ? then[i][1] : 0))]);
}

const fmtMs = (s) => (s === null ? '–' : `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`);
const pct = (a, b) => (b ? `${((100 * a) / b).toFixed(1)} %` : '–');

// ---- views ----
const VIEWS = ['tenants', 'plugins', 'sessions', 'preview', 'events'];

function route() {
  if (!state.edge) return;
  const want = (location.hash || '#tenants').slice(1);
  const view = VIEWS.includes(want) ? want : 'tenants';
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.getAttribute('href') === `#${view}`);
  if (view === 'tenants') renderTenants();
  if (view === 'plugins') renderPlugins();
  if (view === 'events') renderEvents();
}

function routeOf(t) {
  const parts = [];
  if (t.path_prefix) parts.push(`/${t.id}/…`);
  for (const h of t.hosts || []) parts.push(`host ${h}`);
  return parts.join(', ') || '–';
}

function renderTenants() {
  const body = $('#tenants-table tbody');
  const w = window2();
  const rows = state.edge.tenants.map((t) => {
    let rate = '–', hits = '–', p = '–', failures = '–', ads = '–';
    if (w) {
      const m = w.last.metrics;
      const f = w.first.metrics;
      const req = sum(m, 'manifold_requests_total', { tenant: t.id }) - sum(f, 'manifold_requests_total', { tenant: t.id });
      rate = w.first === w.last ? '–' : (req / w.secs).toFixed(1);
      const cache = sum(m, 'manifold_cache_results_total', { tenant: t.id }, 'result');
      const total = Object.values(cache).reduce((a, b) => a + b, 0);
      hits = pct(cache.hit || 0, total);
      const now = pluginBuckets(m, t.id);
      const recent = w.first === w.last ? now : delta(now, pluginBuckets(f, t.id));
      const use = recent.length && recent[recent.length - 1][1] ? recent : now;
      p = `${fmtMs(quantile(use, 0.5))} / ${fmtMs(quantile(use, 0.99))}`;
      const kinds = sum(m, 'manifold_plugin_failures_total', { tenant: t.id }, 'kind');
      failures = Object.entries(kinds).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ') || '0';
      const dec = sum(m, 'manifold_ad_decisions_total', { tenant: t.id }, 'outcome');
      ads = `${dec.filled || 0} / ${dec.slate || 0}`;
    } else if (!state.edge.operator) {
      rate = hits = p = failures = ads = 'operator only';
    }
    const a = t.active;
    return el('tr', { 'data-tenant': t.id },
      el('td', {}, t.id),
      el('td', {}, t.origin, (t.failover || []).length ? el('div', { class: 'hint' }, `failover: ${t.failover.join(', ')}`) : null),
      el('td', {}, routeOf(t)),
      el('td', { class: 'plugin' }, a ? `v${a.version} ${a.digest.slice(0, 19)}…` : (t.plugin ? 'none deployed' : 'pass-through')),
      el('td', {}, t.plugin ? (t.plugin.capabilities.join(', ') || 'none') : '–'),
      el('td', {}, t.plugin ? t.plugin.fail : '–'),
      el('td', { class: 'num' }, rate),
      el('td', { class: 'num' }, hits),
      el('td', { class: 'num' }, p),
      el('td', {}, failures),
      el('td', { class: 'num' }, ads));
  });
  body.replaceChildren(...rows);
  $('#tenants-updated').textContent = w ? `updated ${new Date(w.last.at).toLocaleTimeString()}` : '';
}

function fillTenantSelects() {
  for (const id of ['#plugin-tenant', '#session-tenant', '#preview-tenant']) {
    const sel = $(id);
    const keep = sel.value;
    sel.replaceChildren(...state.edge.tenants.map((t) => el('option', { value: t.id }, t.id)));
    if (keep) sel.value = keep;
  }
  // the preview starts on a tenant that personalizes
  const p = state.edge.tenants.find((t) => t.active);
  if (p) $('#preview-tenant').value = p.id;
  fillCompare();
}

// ---- plugins ----
let pendingUpload = null;

async function refreshEdge() {
  state.edge = await apiJson('/edge');
}

function renderPlugins() {
  const t = state.edge.tenants.find((x) => x.id === $('#plugin-tenant').value) || state.edge.tenants[0];
  if (!t) return;
  const hist = (t.history || []).slice().reverse();
  $('#history tbody').replaceChildren(...hist.map((v) => el('tr', { class: t.active && t.active.version === v.version ? 'active' : '' },
    el('td', {}, `v${v.version}`),
    el('td', { class: 'mono' }, v.digest),
    el('td', {}, v.source),
    el('td', {}, new Date(v.activated_unix * 1000).toLocaleString()),
    el('td', {}, t.active && t.active.version === v.version ? 'active' : ''))));
  $('#rollback').disabled = hist.length < 2;
}

async function checkUpload(file) {
  pendingUpload = null;
  $('#deploy').disabled = true;
  $('#plugin-message').textContent = '';
  const out = $('#check-result');
  out.replaceChildren(el('p', {}, `checking ${file.name} (${file.size} bytes)…`));
  const bytes = await file.arrayBuffer();
  const tenant = $('#plugin-tenant').value;
  const res = await api(`/tenants/${encodeURIComponent(tenant)}/plugin/check`, { method: 'POST', body: bytes, headers: { 'content-type': 'application/wasm' } });
  const text = await res.text();
  let r;
  try { r = JSON.parse(text); } catch (_) { r = { ok: false, error: text.trim() }; }
  if (res.ok && r.ok) {
    out.replaceChildren(el('div', { class: 'ok', id: 'check-ok' },
      el('strong', {}, 'Valid plugin. '),
      `world ${r.world}, imports ${r.imports.length ? r.imports.join(', ') : 'nothing'}, ${r.bytes} bytes, compiled in ${r.compile_ms} ms, ${r.digest}`));
    pendingUpload = { tenant, bytes, name: file.name };
    $('#deploy').disabled = false;
  } else {
    out.replaceChildren(el('div', { class: 'error', id: 'check-error' }, el('strong', {}, `Refused (${res.status}): `), r.error || text));
  }
}

async function deploy() {
  if (!pendingUpload) return;
  const { tenant, bytes, name } = pendingUpload;
  $('#deploy').disabled = true;
  try {
    const v = await apiJson(`/tenants/${encodeURIComponent(tenant)}/plugin`, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/wasm' } });
    $('#plugin-message').textContent = `${name} deployed to ${tenant} as v${v.version}.`;
    pendingUpload = null;
    $('#check-result').replaceChildren();
  } catch (e) {
    if (e instanceof Unauthorized) return;
    $('#plugin-message').textContent = `Deploy failed: ${e.message}`;
  }
  await refreshEdge();
  renderPlugins();
}

async function rollback() {
  const tenant = $('#plugin-tenant').value;
  try {
    const v = await apiJson(`/tenants/${encodeURIComponent(tenant)}/plugin/rollback`, { method: 'POST' });
    $('#plugin-message').textContent = `${tenant} rolled back: v${v.version} is active.`;
  } catch (e) {
    if (e instanceof Unauthorized) return;
    $('#plugin-message').textContent = `Rollback failed: ${e.message}`;
  }
  await refreshEdge();
  renderPlugins();
}

// ---- sessions ----
function lineDiff(a, b) {
  // LCS over lines; long manifests fall back to a positional comparison
  const x = a.split('\n');
  const y = b.split('\n');
  if (x.length * y.length > 4e6) {
    const n = Math.max(x.length, y.length);
    const out = [];
    for (let i = 0; i < n; i++) {
      if (x[i] === y[i]) out.push(['same', x[i], y[i]]);
      else out.push(['changed', x[i] ?? '', y[i] ?? '']);
    }
    return out;
  }
  const dp = Array.from({ length: x.length + 1 }, () => new Uint32Array(y.length + 1));
  for (let i = x.length - 1; i >= 0; i--) {
    for (let j = y.length - 1; j >= 0; j--) {
      dp[i][j] = x[i] === y[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
    }
  }
  const out = [];
  let i = 0, j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) { out.push(['same', x[i], y[j]]); i++; j++; }
    else if (j < y.length && (i >= x.length || dp[i][j + 1] >= dp[i + 1][j])) { out.push(['added', '', y[j]]); j++; }
    else { out.push(['removed', x[i], '']); i++; }
  }
  return out;
}

function renderDiff(m) {
  const rows = lineDiff(m.origin, m.served).map(([kind, l, r]) => el('tr', { class: kind },
    el('td', { class: 'mono' }, l), el('td', { class: 'mono' }, r)));
  const changed = rows.filter((r) => r.className !== 'same').length;
  return el('div', { class: 'diff' },
    el('p', { class: 'hint' }, `${m.how}, ${new Date(m.unix_ms).toLocaleTimeString()}: ${changed} lines differ`),
    el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'origin'), el('th', {}, 'served to this session'))), el('tbody', {}, rows)));
}

async function lookupSession(ev) {
  ev.preventDefault();
  const out = $('#session-out');
  const tenant = $('#session-tenant').value;
  const key = $('#session-key').value.trim().replace(/^.*\/~/, '').replace(/\/.*$/, '');
  out.replaceChildren(el('p', {}, 'looking up…'));
  let s;
  try {
    s = await apiJson(`/tenants/${encodeURIComponent(tenant)}/sessions/${encodeURIComponent(key)}`);
  } catch (e) {
    if (!(e instanceof Unauthorized)) out.replaceChildren(el('p', { class: 'error' }, e.message));
    return;
  }
  const breaks = s.breaks.map((b) => el('div', { class: 'break', 'data-break': b.id },
    el('h4', {}, `break ${b.id}`),
    el('p', {}, `from media sequence ${b.record.start_seq}, ${b.record.duration} s`,
      b.record.joined_mid ? ', joined mid-break' : '',
      b.record.content ? ', not filled (content plays)' : '',
      b.facts && b.facts.end_seq != null ? `, content back at ${b.facts.end_seq}` : ''),
    el('table', { class: 'ads' },
      el('thead', {}, el('tr', {}, el('th', {}, 'pod'), el('th', {}, 'ad'), el('th', {}, 'creative'), el('th', {}, 'duration'), el('th', {}, 'position'))),
      el('tbody', {}, b.record.ads.map((a, i) => {
        const first = b.record.slots.find((sl) => sl.ad === i);
        return el('tr', { class: 'ad' }, el('td', {}, i), el('td', {}, a.id), el('td', {}, a.creative), el('td', {}, `${a.duration} s`),
          el('td', {}, first ? `+${first.offset.toFixed(2)} s` : '–'));
      }))),
    el('p', { class: 'beacons' }, `beacons fired: ${b.beacons.fired.length ? b.beacons.fired.join(', ') : 'none'}`),
    el('p', { class: 'beacons pending' }, `pending: ${b.beacons.pending.length ? b.beacons.pending.join(', ') : 'none'}`)));
  const pick = el('select', { id: 'manifest-pick' }, s.manifests.map((m, i) => el('option', { value: i }, `${m.path} at ${new Date(m.unix_ms).toLocaleTimeString()}`)));
  const diffBox = el('div', { id: 'diff-box' });
  const show = () => diffBox.replaceChildren(s.manifests.length ? renderDiff(s.manifests[pick.value]) : el('p', {}, 'No manifest of this session is kept on this node.'));
  pick.addEventListener('change', show);
  if (s.manifests.length) pick.value = s.manifests.length - 1;
  out.replaceChildren(
    el('dl', { class: 'facts' },
      el('dt', {}, 'session'), el('dd', { class: 'mono', id: 'session-id' }, s.session),
      el('dt', {}, 'mode'), el('dd', { id: 'session-mode' }, s.insertion),
      el('dt', {}, 'in the store'), el('dd', {}, s.exists ? 'yes' : 'no (expired)'),
      el('dt', {}, 'joined'), el('dd', {}, s.joined_at_seq != null ? `at media sequence ${s.joined_at_seq}` : '–'),
      el('dt', {}, 'claims'), el('dd', {}, s.claims.length ? s.claims.map(([k, v]) => `${k}=${v}`).join(', ') : 'none')),
    el('h3', {}, `Breaks (${s.breaks.length})`),
    ...(breaks.length ? breaks : [el('p', {}, 'No break yet.')]),
    el('h3', {}, 'Last manifests served'),
    pick, diffBox);
  show();
}

// ---- preview ----
function viewerBase(scheme) {
  const l = state.edge.listeners.find((x) => x.scheme === scheme) || state.edge.listeners[0];
  if (!l) return null;
  const i = l.listen.lastIndexOf(':');
  let host = l.listen.slice(0, i);
  if (['0.0.0.0', '[::]', '::', ''].includes(host)) host = location.hostname;
  return `${l.scheme}://${host}:${l.listen.slice(i + 1)}`;
}

function fillCompare() {
  const t = state.edge.tenants.find((x) => x.id === $('#preview-tenant').value);
  const sel = $('#preview-compare');
  const opts = [el('option', { value: '' }, 'nothing')];
  if (t) {
    // the same origin through a tenant that passes it through: the origin's stream as viewers get it
    for (const o of state.edge.tenants.filter((x) => x.id !== t.id && x.origin === t.origin && !x.active && x.path_prefix)) {
      opts.push(el('option', { value: `tenant:${o.id}` }, `${o.id} (pass-through, same origin)`));
    }
    opts.push(el('option', { value: 'origin' }, `the origin directly (needs CORS there)`));
  }
  sel.replaceChildren(...opts);
  if (opts.length > 2) sel.value = opts[1].value;
}

function streamUrl(tenantId, path, params) {
  const t = state.edge.tenants.find((x) => x.id === tenantId);
  const base = viewerBase(location.protocol === 'https:' ? 'https' : 'http');
  if (!t || !base || !t.path_prefix) return null;
  const u = new URL(`${base}/${t.id}${path.startsWith('/') ? path : `/${path}`}`);
  for (const [k, v] of params) u.searchParams.append(k, v);
  return u.toString();
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    if (document.querySelector(`script[src="${src}"]`)) { resolve(); return; }
    const s = el('script', { src });
    s.addEventListener('load', resolve);
    s.addEventListener('error', () => reject(new Error(`${src} did not load`)));
    document.head.append(s);
  });
}

function stopPlayers() {
  for (const p of state.players) { try { p.destroy(); } catch (_) { /* already gone */ } }
  state.players = [];
}

const report = { main: { started: false, errors: [], ads: 0, segments: 0 }, compare: { started: false, errors: [] } };
window.consoleReport = () => ({
  main: Object.assign({}, report.main, { time: $('#video-main').currentTime }),
  compare: Object.assign({}, report.compare, { time: $('#video-compare').currentTime }),
});

function drawTimeline(segments) {
  // segments: [{start, duration, ad}] of the personalized stream's current rendition
  const box = $('#timeline');
  if (!segments.length) { box.replaceChildren(); return; }
  const t0 = segments[0].start;
  const span = segments[segments.length - 1].start + segments[segments.length - 1].duration - t0 || 1;
  const now = $('#video-main').currentTime;
  const bars = segments.map((s) => el('span', {
    class: s.ad ? 'seg ad' : 'seg',
    title: `${s.start.toFixed(1)} s${s.ad ? ' (ad)' : ''}`,
    'data-left': ((100 * (s.start - t0)) / span).toFixed(3),
    'data-width': ((100 * s.duration) / span).toFixed(3),
  }));
  const head = el('span', { class: 'playhead', 'data-left': ((100 * Math.min(Math.max(now - t0, 0), span)) / span).toFixed(3) });
  box.replaceChildren(...bars, head);
  // positions through the CSSOM (the policy allows no inline style attributes)
  for (const b of box.children) {
    b.style.left = `${b.dataset.left}%`;
    if (b.dataset.width) b.style.width = `${b.dataset.width}%`;
  }
  report.main.ads = segments.filter((s) => s.ad).length;
  report.main.segments = segments.length;
}

const isAd = (url) => /[?&]mf_b=/.test(url || '');

function playHls(video, url, which, headers, onSegments) {
  const hls = new window.Hls({
    lowLatencyMode: /\/ll\//.test(url),
    xhrSetup: (xhr) => { for (const [k, v] of headers) xhr.setRequestHeader(k, v); },
  });
  hls.on(window.Hls.Events.ERROR, (_, d) => { if (d.fatal) report[which].errors.push(`${d.type}: ${d.details}`); });
  hls.on(window.Hls.Events.FRAG_BUFFERED, () => { report[which].started = true; });
  if (onSegments) {
    hls.on(window.Hls.Events.LEVEL_UPDATED, (_, d) => {
      onSegments(d.details.fragments.map((f) => ({ start: f.start, duration: f.duration, ad: isAd(f.url) })));
    });
  }
  hls.loadSource(url);
  hls.attachMedia(video);
  video.play().catch(() => {});
  return hls;
}

async function playShaka(video, url, which, headers, onSegments) {
  const player = new window.shaka.Player();
  await player.attach(video);
  player.getNetworkingEngine().registerRequestFilter((_, req) => { for (const [k, v] of headers) req.headers[k] = v; });
  player.addEventListener('error', (e) => report[which].errors.push(`shaka ${e.detail && e.detail.code}`));
  video.addEventListener('playing', () => { report[which].started = true; }, { once: true });
  await player.load(url);
  video.play().catch(() => {});
  if (onSegments) {
    const tick = async () => {
      // the personalized stream's references: ad segments carry the break (mf_b) in their URL
      try {
        const v = player.getVariantTracks().find((x) => x.active);
        const manifest = player.getManifest && player.getManifest();
        const variant = manifest && manifest.variants.find((x) => v && x.id === v.id);
        const stream = variant && (variant.video || variant.audio);
        if (stream && stream.segmentIndex) {
          const segs = [];
          for (const ref of stream.segmentIndex) segs.push({ start: ref.startTime, duration: ref.endTime - ref.startTime, ad: isAd(ref.getUris()[0]) });
          onSegments(segs);
        }
      } catch (_) { /* no index yet */ }
    };
    const t = setInterval(tick, 2000);
    const destroy = player.destroy.bind(player);
    return { destroy: () => { clearInterval(t); return destroy(); } };
  }
  return player;
}

async function preview(ev) {
  ev.preventDefault();
  stopPlayers();
  report.main = { started: false, errors: [], ads: 0, segments: 0 };
  report.compare = { started: false, errors: [] };
  const tenant = $('#preview-tenant').value;
  const path = $('#preview-path').value.trim() || '/live/hls/master.m3u8';
  const kind = $('#preview-player').value;
  const params = [];
  if ($('#preview-device').value) params.push(['device', $('#preview-device').value]);
  for (const [k, v] of new URLSearchParams($('#preview-query').value.trim())) params.push([k, v]);
  if ($('#preview-cmcd').value.trim()) params.push(['CMCD', $('#preview-cmcd').value.trim()]);
  const t = state.edge.tenants.find((x) => x.id === tenant);
  const headers = [];
  const country = $('#preview-country').value.trim();
  if (country && t && t.plugin && t.plugin.country_header) headers.push([t.plugin.country_header, country]);
  const url = streamUrl(tenant, path, params);
  const status = $('#preview-status');
  if (!url) { status.textContent = `${tenant} is routed by host name only: the preview needs its /${tenant}/ path prefix.`; return; }
  let compareUrl = null;
  const c = $('#preview-compare').value;
  if (c.startsWith('tenant:')) compareUrl = streamUrl(c.slice(7), path, params);
  else if (c === 'origin' && t) compareUrl = `${t.origin.replace(/\/$/, '')}${path}`;
  $('#cap-main').textContent = `${tenant}: ${url}`;
  $('#cap-compare').textContent = compareUrl ? `compare: ${compareUrl}` : 'nothing to compare with';
  status.textContent = `loading ${kind === 'hls' ? 'hls.js' : 'Shaka'}…`;
  try {
    await loadScript(kind === 'hls' ? 'hls.js' : 'shaka.js');
    if (kind === 'shaka') window.shaka.polyfill.installAll();
    const start = kind === 'hls' ? playHls : playShaka;
    state.players.push(await start($('#video-main'), url, 'main', headers, drawTimeline));
    if (compareUrl) state.players.push(await start($('#video-compare'), compareUrl, 'compare', [], null));
    status.textContent = `playing ${url}`;
  } catch (e) {
    status.textContent = `could not play: ${e.message || e}`;
    report.main.errors.push(String(e.message || e));
  }
}

// ---- event view ----
function series(fn) {
  const s = state.samples;
  const out = [];
  for (let i = 1; i < s.length; i++) out.push([s[i].at, fn(s[i].metrics, s[i - 1].metrics, (s[i].at - s[i - 1].at) / 1000)]);
  return out;
}

function chart(title, points, unit) {
  const W = 560, H = 120, P = 4;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('class', 'chart');
  const max = Math.max(1e-9, ...points.map((p) => p[1]));
  if (points.length > 1) {
    const t0 = points[0][0], t1 = points[points.length - 1][0];
    const xy = points.map(([t, v]) => `${(P + ((W - 2 * P) * (t - t0)) / Math.max(1, t1 - t0)).toFixed(1)},${(H - P - ((H - 2 * P) * v) / max).toFixed(1)}`);
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', xy.join(' '));
    svg.append(line);
  }
  const last = points.length ? points[points.length - 1][1] : 0;
  return el('figure', { class: 'chart-box', 'data-chart': title },
    el('figcaption', {}, `${title}: `, el('strong', { class: 'value' }, `${last.toFixed(last < 10 ? 1 : 0)} ${unit}`), ` (max ${max < 1e-6 ? 0 : max.toFixed(1)})`),
    svg);
}

function renderEvents() {
  if (!state.edge.operator) { $('#charts').replaceChildren(el('p', {}, 'The event view reads every tenant\'s metrics: operator only.')); return; }
  const rate = (name, where) => series((m, p, dt) => Math.max(0, sum(m, name, where) - sum(p, name, where)) / Math.max(dt, 0.001));
  $('#charts').replaceChildren(
    chart('viewers (sessions active)', series((m) => sum(m, 'manifold_sessions_active')), ''),
    chart('requests', rate('manifold_requests_total', {}), '/s'),
    chart('origin fetches', rate('manifold_origin_fetches_total', {}), '/s'),
    chart('ads filled', rate('manifold_ad_decisions_total', { outcome: 'filled' }), '/s'),
    chart('slate', rate('manifold_ad_decisions_total', { outcome: 'slate' }), '/s'));
}

// ---- wiring ----
document.addEventListener('DOMContentLoaded', () => {
  $('#login-form').addEventListener('submit', (ev) => { ev.preventDefault(); login($('#token').value); });
  $('#logout').addEventListener('click', () => logout(''));
  window.addEventListener('hashchange', route);
  $('#plugin-tenant').addEventListener('change', renderPlugins);
  $('#plugin-file').addEventListener('change', (ev) => { if (ev.target.files[0]) checkUpload(ev.target.files[0]); });
  const drop = $('#drop');
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => { ev.preventDefault(); drop.classList.remove('over'); if (ev.dataTransfer.files[0]) checkUpload(ev.dataTransfer.files[0]); });
  $('#deploy').addEventListener('click', deploy);
  $('#rollback').addEventListener('click', rollback);
  $('#session-form').addEventListener('submit', lookupSession);
  $('#preview-tenant').addEventListener('change', fillCompare);
  $('#preview-form').addEventListener('submit', preview);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved);
});
