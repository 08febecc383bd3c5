// The Manifold plugin SDK for TypeScript: write a manifest plugin against typed views of the
// manifest, exported as the `lean-session-plugin` world of manifold:plugin@0.2.3. The helpers match
// the Rust SDK (plugins/sdk) name for name, so a plugin reads the same in both languages.
//
//   import { plugin, edit } from "@manifold/plugin-sdk";
//   export const { hlsMaster, hlsMedia, dashMpd } = plugin({
//     hlsMaster: (m) => m.variants.filter((v) => (v.resolution?.height ?? 0) > 360).map((v) => edit.dropVariant(v.index)),
//   });
//
// Build with `node <sdk>/build.mjs plugin.ts -o plugin.wasm`, check with
// `manifold plugin check plugin.wasm`.
import * as host from "manifold:plugin/host@0.2.3";
import * as lowLatency from "manifold:plugin/low-latency@0.2.3";
import * as hostSegments from "manifold:plugin/segments@0.2.3";
import * as wasiRandom from "wasi:random/random@0.2.0";
import type {
  Ad,
  AdBreak,
  DashMpd,
  Edit,
  HlsMaster,
  HlsMedia,
  Segment,
  Session,
  Viewer,
} from "manifold:plugin/types@0.2.3";

export type * from "manifold:plugin/types@0.2.3";
export type { Edge as LiveEdge, Part } from "manifold:plugin/low-latency@0.2.3";

// Math.random(): QuickJS seeds its generator once, when the build pre-initializes the heap, so
// every instance would draw the same numbers. The SDK's generator (xoshiro128**) is seeded
// from the host on first use in each instance (each call runs in a fresh one).
const rng = new Uint32Array(4);
let seeded = false;
function nextU32(): number {
  if (!seeded) {
    const b = wasiRandom.getRandomBytes(16);
    for (let i = 0; i < 4; i++) rng[i] = (b[4 * i] | (b[4 * i + 1] << 8) | (b[4 * i + 2] << 16) | (b[4 * i + 3] << 24)) >>> 0;
    if (!(rng[0] | rng[1] | rng[2] | rng[3])) rng[0] = 1;
    seeded = true;
  }
  const r = Math.imul(rotl(Math.imul(rng[1], 5), 7), 9) >>> 0;
  const t = rng[1] << 9;
  rng[2] ^= rng[0];
  rng[3] ^= rng[1];
  rng[1] ^= rng[2];
  rng[0] ^= rng[3];
  rng[2] ^= t;
  rng[3] = rotl(rng[3], 11);
  return r;
}
const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
Math.random = () => ((nextU32() >>> 5) * 67108864 + (nextU32() >>> 6)) / 9007199254740992;

/** A manifest plugin. Every entry point defaults to "no edits": implement the ones you need.
 * Throwing fails the call with the thrown message (the tenant's failure policy applies). */
export interface Plugin {
  hlsMaster?(master: HlsMaster, viewer: Viewer, config: string): Edit[];
  hlsMedia?(media: HlsMedia, viewer: Viewer, config: string): Edit[];
  dashMpd?(mpd: DashMpd, viewer: Viewer, config: string): Edit[];
  /** With the viewer's session (how it gets its ads); defaults to `hlsMaster`. */
  hlsMasterInSession?(master: HlsMaster, viewer: Viewer, session: Session, config: string): Edit[];
  /** With the viewer's session; defaults to `hlsMedia`. */
  hlsMediaInSession?(media: HlsMedia, viewer: Viewer, session: Session, config: string): Edit[];
  /** With the viewer's session; defaults to `dashMpd`. */
  dashMpdInSession?(mpd: DashMpd, viewer: Viewer, session: Session, config: string): Edit[];
}

type Entry<M> = (m: M, v: Viewer, s: Session, config: string) => Edit[];

/** The world's three exports for a plugin: `export const { hlsMaster, hlsMedia, dashMpd } = plugin({...})`. */
export function plugin(p: Plugin): { hlsMaster: Entry<HlsMaster>; hlsMedia: Entry<HlsMedia>; dashMpd: Entry<DashMpd> } {
  const entry =
    <M>(inSession: Plugin[keyof Plugin] | undefined, plain: Plugin[keyof Plugin] | undefined, media = false): Entry<M> =>
    (m, v, s, c) =>
      guarded(() => {
        if (media) onDemand(m as HlsMedia);
        if (inSession) return (inSession as Entry<M>).call(p, m, v, s, c);
        if (plain) return (plain as (m: M, v: Viewer, c: string) => Edit[]).call(p, m, v, c);
        return [];
      });
  return {
    hlsMaster: entry<HlsMaster>(p.hlsMasterInSession, p.hlsMaster),
    hlsMedia: entry<HlsMedia>(p.hlsMediaInSession, p.hlsMedia, true),
    dashMpd: entry<DashMpd>(p.dashMpdInSession, p.dashMpd),
  };
}

// The host leaves the segments out of the media playlist it passes (the world imports
// `segments`): turning 300 segment records into objects is most of a call's time, and most
// plugins read only the breaks. `media.segments` reads them all from the host the first time
// it is used; `segments(first, count)` reads a few.
function onDemand(m: HlsMedia) {
  let all: Segment[] | null = null;
  Object.defineProperty(m, "segments", {
    get: () => (all ??= hostSegments.range(0, hostSegments.count())),
    set: (v: Segment[]) => {
      all = v;
    },
    enumerable: true,
    configurable: true,
  });
}

/** How many segments the media playlist being personalized has (without reading them). */
export function segmentCount(): number {
  return hostSegments.count();
}

/** The media playlist's segments `first` to `first + count - 1` (clipped to the playlist),
 * read from the host without the others: e.g. the last ones, `segments(segmentCount() - 3, 3)`. */
export function segments(first: number, count: number): Segment[] {
  return hostSegments.range(Math.max(0, first), Math.max(0, count));
}

// The canonical ABI takes a thrown string as the `err` of the result; anything else thrown
// would trap, so it is turned into its message.
function guarded(f: () => Edit[]): Edit[] {
  try {
    return f();
  } catch (e) {
    throw typeof e === "string" ? e : e instanceof Error ? e.message : String(e);
  }
}

/** The tenant's plugin config string, read as `key=value` pairs separated by `;` or newlines. */
const readConfig = {
  /** The value of `key`, trimmed. */
  get(config: string, key: string): string | null {
    // found with indexOf, not a regex split or a loop over characters: either costs QuickJS
    // more than the rest of a typical call
    const next = (c: string, from: number) => {
      const i = config.indexOf(c, from);
      return i < 0 ? config.length : i;
    };
    let semi = next(";", 0);
    let nl = next("\n", 0);
    let eq = next("=", 0);
    for (let start = 0; start < config.length; ) {
      if (semi < start) semi = next(";", start);
      if (nl < start) nl = next("\n", start);
      if (eq < start) eq = next("=", start);
      const end = semi < nl ? semi : nl;
      if (eq < end && config.slice(start, eq).trim() === key) return config.slice(eq + 1, end).trim();
      start = end + 1;
    }
    return null;
  },
  /** A comma-separated list value of `key` (empty when absent). */
  list(config: string, key: string): string[] {
    const v = readConfig.get(config, key);
    return v === null ? [] : v.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  },
  /** A numeric value of `key` (as Rust's `f64` parse reads it: no empty, no trailing text). */
  number(config: string, key: string): number | null {
    const v = readConfig.get(config, key);
    return v === null ? null : parseNumber(v);
  },
};
export const config = readConfig;

const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9";

/** `s` as a number, or null unless all of it is one (as Rust's `f64` parse reads it: an
 * optional sign, digits with an optional fraction and exponent, or inf/infinity/nan in any
 * case; stricter than `Number()`, which reads "" as 0). */
export function parseNumber(s: string): number | null {
  let i = s[0] === "+" || s[0] === "-" ? 1 : 0;
  const int = i;
  while (isDigit(s[i])) i++;
  let digits = i > int;
  if (s[i] === ".") {
    const frac = ++i;
    while (isDigit(s[i])) i++;
    digits ||= i > frac;
  }
  if (!digits) {
    const word = s.slice(int).toLowerCase();
    if (word === "inf" || word === "infinity") return s[0] === "-" ? -Infinity : Infinity;
    return word === "nan" ? NaN : null;
  }
  if (s[i] === "e" || s[i] === "E") {
    i += s[i + 1] === "+" || s[i + 1] === "-" ? 2 : 1;
    const exp = i;
    while (isDigit(s[i])) i++;
    if (i === exp) return null;
  }
  return i === s.length ? Number(s) : null;
}

/** `s` as a u32 (digits only), or null. */
export function parseU32(s: string): number | null {
  let i = s[0] === "+" ? 1 : 0;
  if (i === s.length) return null;
  for (; i < s.length; i++) if (!isDigit(s[i])) return null;
  const n = Number(s);
  return n <= 0xffffffff ? n : null;
}

/** `s` from its first ASCII digit on ("" without one): `ad10` → `10`, as Rust's
 * `s.trim_start_matches(|c: char| !c.is_ascii_digit())`. */
export function fromFirstDigit(s: string): string {
  let i = 0;
  while (i < s.length && !isDigit(s[i])) i++;
  return s.slice(i);
}

/** A query (player) parameter. */
export function query(viewer: Viewer, key: string): string | null {
  return pick(viewer.query, key);
}

/** A passed-on request header (lowercase name). */
export function header(viewer: Viewer, name: string): string | null {
  return pick(viewer.headers, name);
}

/** A CMCD key the player sent (e.g. `br`, the encoded bitrate in kbps). */
export function cmcd(viewer: Viewer, key: string): string | null {
  return pick(viewer.cmcd, key);
}

function pick(pairs: Array<[string, string]>, key: string): string | null {
  const hit = pairs.find(([k]) => k === key);
  return hit ? hit[1] : null;
}

/** An ad playing catalog creative `creative` for `duration` seconds. */
export function ad(creative: string, duration: number): Ad {
  return { id: creative, creative, duration };
}

/** The break with this id, if the input has it. */
export function findBreak(breaks: AdBreak[], id: string): AdBreak | null {
  return breaks.find((b) => b.id === id) ?? null;
}

/** Ads from `creatives` in order, each as long as `seconds(creative)`, while they fit in
 * `duration` (the host pads the rest of a break with slate). */
export function pod(creatives: string[], duration: number, seconds: (creative: string) => number): Ad[] {
  let left = duration;
  const ads: Ad[] = [];
  for (const c of creatives) {
    const s = seconds(c);
    if (s > 0 && s <= left + 0.001) {
      left -= s;
      ads.push(ad(c, s));
    }
  }
  return ads;
}

/** The edits a plugin returns (the host checks every one). */
export const edit = {
  dropVariant: (index: number): Edit => ({ tag: "drop-variant", val: index }),
  dropRendition: (index: number): Edit => ({ tag: "drop-rendition", val: index }),
  dropRepresentation: (id: string): Edit => ({ tag: "drop-representation", val: id }),
  fillBreak: (breakId: string, pod: Ad[]): Edit => ({ tag: "fill-break", val: { breakId, pod } }),
  preroll: (pod: Ad[]): Edit => ({ tag: "preroll", val: pod }),
  insertPod: (at: number, pod: Ad[]): Edit => ({ tag: "insert-pod", val: { at, pod } }),
  addTag: (beforeSegment: number, line: string): Edit => ({ tag: "add-tag", val: { beforeSegment, line } }),
  rewriteUri: (index: number, uri: string): Edit => ({ tag: "rewrite-uri", val: { index, uri } }),
};

/** The host's ads for a break of the input, for this viewer (capability `ads`). */
export function decideAds(b: AdBreak): Ad[] {
  return host.decideAds(b);
}

/** Wall-clock time, Unix milliseconds (capability `clock`). `Date.now()` reads the same clock. */
export function nowMs(): number {
  return Number(host.nowMs());
}

/** The LL-HLS live edge of the media playlist being personalized; null without parts. */
export function liveEdge(): lowLatency.Edge | null {
  return lowLatency.liveEdge() ?? null;
}

/** The tenant's key-value store (capability `kv`), with string values. */
export const kv = {
  get(key: string): string | null {
    const v = host.kvGet(key);
    return v == null ? null : new TextDecoderLite().decode(v);
  },
  set(key: string, value: string): void {
    host.kvSet(key, utf8(value));
  },
};

// QuickJS has no TextEncoder/TextDecoder: UTF-8 by hand.
function utf8(s: string): Uint8Array {
  const out: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

class TextDecoderLite {
  decode(b: Uint8Array): string {
    let s = "";
    for (let i = 0; i < b.length; ) {
      const c = b[i++];
      let cp = c;
      if (c >= 0xf0) cp = ((c & 7) << 18) | ((b[i++] & 63) << 12) | ((b[i++] & 63) << 6) | (b[i++] & 63);
      else if (c >= 0xe0) cp = ((c & 15) << 12) | ((b[i++] & 63) << 6) | (b[i++] & 63);
      else if (c >= 0xc0) cp = ((c & 31) << 6) | (b[i++] & 63);
      s += String.fromCodePoint(cp);
    }
    return s;
  }
}

/** Logging through the host (capability `log`). */
export const log = {
  debug: (msg: string) => host.log("debug", msg),
  info: (msg: string) => host.log("info", msg),
  warn: (msg: string) => host.log("warn", msg),
  error: (msg: string) => host.log("error", msg),
};

/** `console.log/info/warn/error/debug` write to the tenant's log, like `log` (capability
 * `log`: without it they fail the call, as any ungranted capability does). QuickJS alone has
 * no console at all. */
type Console = Record<"log" | "info" | "warn" | "error" | "debug", (...args: unknown[]) => void>;
declare global {
  // eslint-disable-next-line no-var
  var console: Console;
}
function show(a: unknown): string {
  if (typeof a === "string") return a;
  if (a instanceof Error) return `${a.name}: ${a.message}`;
  try {
    return JSON.stringify(a) ?? String(a);
  } catch {
    return String(a);
  }
}
const line = (args: unknown[]) => args.map(show).join(" ");
globalThis.console = {
  log: (...a) => host.log("info", line(a)),
  info: (...a) => host.log("info", line(a)),
  debug: (...a) => host.log("debug", line(a)),
  warn: (...a) => host.log("warn", line(a)),
  error: (...a) => host.log("error", line(a)),
};
