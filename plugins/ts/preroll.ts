// Plays a pre-roll pod before the content: `pod=ad10,ad15` in the config (default `ad10`).
// Viewers with `?preroll=0` skip it. In VOD, `midroll=ad10` with `midroll_at=20` also plays a
// mid-roll pod 20 s into the content. `guided_pod=ad15` plays another pre-roll pod to
// server-guided sessions (the session is part of the plugin's input).
// The same plugin as plugins/preroll (Rust): both give the same manifests.
import { plugin, config, query, ad, edit, fromFirstDigit, parseNumber, type Edit, type Session, type Viewer } from "@manifold/plugin-sdk";

/** `adN` lasts N s (10 when N is not a number). */
const podOf = (names: string[]) => names.map((n) => ad(n, parseNumber(fromFirstDigit(n)) ?? 10));

function preroll(v: Viewer, s: Session, cfg: string, live: boolean): Edit[] {
  if (query(v, "preroll") === "0") return [];
  const guided = config.list(cfg, "guided_pod");
  const names = s.insertion === "guided" && guided.length ? guided : config.list(cfg, "pod");
  if (!names.length) names.push("ad10");
  const edits = [edit.preroll(podOf(names))];
  const mid = config.list(cfg, "midroll");
  const at = config.number(cfg, "midroll_at");
  if (!live && mid.length && at !== null) edits.push(edit.insertPod(at, podOf(mid)));
  return edits;
}

export const { hlsMaster, hlsMedia, dashMpd } = plugin({
  hlsMediaInSession: (m, v, s, cfg) => preroll(v, s, cfg, m.live),
  dashMpdInSession: (m, v, s, cfg) => preroll(v, s, cfg, m.dynamic),
});
