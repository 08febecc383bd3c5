// Fills every SCTE-35 break with an ad pod; the host pads the rest of the break with slate.
// The pod comes from the host's ad decision (`decide-ads`) or, with `pod=ad10,ad15` in the
// config, from the config (each ad as long as its creative: `ad10` → 10 s).
// The same plugin as plugins/scte35-breaks (Rust): both give the same manifests.
import { plugin, config, decideAds, edit, fromFirstDigit, parseNumber, pod, type AdBreak, type Edit } from "@manifold/plugin-sdk";

/** `ad10` → 10 (0 when the rest is not a number). */
const seconds = (creative: string) => parseNumber(fromFirstDigit(creative)) ?? 0;

function fill(breaks: AdBreak[], cfg: string): Edit[] {
  const fixed = config.list(cfg, "pod");
  return breaks.map((b) => edit.fillBreak(b.id, fixed.length ? pod(fixed, b.duration, seconds) : decideAds(b)));
}

export const { hlsMaster, hlsMedia, dashMpd } = plugin({
  hlsMedia: (m, _v, cfg) => fill(m.breaks, cfg),
  dashMpd: (m, _v, cfg) => fill(m.breaks, cfg),
});
