// Drops variants and representations above the viewer's device cap (e.g. mobile ≤ 720p).
// Config: per-class caps in lines, `mobile=720; tablet=1080; tv=2160; desktop=2160`;
// a `maxres` player param (`?maxres=480`) lowers the cap further.
// The same plugin as plugins/variant-filter (Rust): both give the same manifests.
import { plugin, config, query, edit, parseU32, type Viewer } from "@manifold/plugin-sdk";

/** Rust's saturating `f64 as u32`. */
const asU32 = (n: number) => (Number.isNaN(n) ? 0 : Math.min(Math.max(Math.trunc(n), 0), 0xffffffff));

function cap(v: Viewer, cfg: string): number | null {
  const byDevice = config.number(cfg, v.device);
  const byParam = query(v, "maxres");
  const caps = [byDevice === null ? null : asU32(byDevice), byParam === null ? null : parseU32(byParam)];
  const set = caps.filter((c): c is number => c !== null);
  return set.length ? Math.min(...set) : null;
}

export const { hlsMaster, hlsMedia, dashMpd } = plugin({
  hlsMaster(m, v, cfg) {
    const c = cap(v, cfg);
    if (c === null) return [];
    return m.variants.filter((x) => x.resolution != null && x.resolution.height > c).map((x) => edit.dropVariant(x.index));
  },
  dashMpd(mpd, v, cfg) {
    const c = cap(v, cfg);
    if (c === null) return [];
    return mpd.periods
      .flatMap((p) => p.adaptationSets)
      .flatMap((a) => a.representations)
      .filter((r) => r.height != null && r.height > c)
      .map((r) => edit.dropRepresentation(r.id));
  },
});
