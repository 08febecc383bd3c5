// {{name}}: a Manifold manifest plugin. Drops variants above the viewer's `?maxres=` and fills
// each ad break with the config's `pod=` creatives (`pod=ad10,ad15`: `adN` lasts N s).
// Build: npm run setup (once), npm run build; check: manifold plugin check plugin.wasm
import { plugin, config, query, edit, parseNumber, parseU32, pod } from "@manifold/plugin-sdk";

const seconds = (creative: string) => parseNumber(creative.replace(/^[^0-9]*/, "")) ?? 0;

export const { hlsMaster, hlsMedia, dashMpd } = plugin({
  hlsMaster(m, v) {
    const max = parseU32(query(v, "maxres") ?? "");
    if (max === null) return [];
    return m.variants.filter((x) => x.resolution != null && x.resolution.height > max).map((x) => edit.dropVariant(x.index));
  },
  hlsMedia(m, _v, cfg) {
    const names = config.list(cfg, "pod");
    return m.breaks.map((b) => edit.fillBreak(b.id, pod(names, b.duration, seconds)));
  },
  dashMpd(m, _v, cfg) {
    const names = config.list(cfg, "pod");
    return m.breaks.map((b) => edit.fillBreak(b.id, pod(names, b.duration, seconds)));
  },
});
