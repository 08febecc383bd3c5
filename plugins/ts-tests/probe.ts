// A test plugin: what a QuickJS plugin sees of the host's WASI subset. Its media call answers
// with tags naming Math.random() and, with `now=1` in the config, Date.now(); `throw=error`
// throws an Error, `throw=string` a string (both must come back as the plugin's own error);
// `console=1` writes to console.log (the tenant's log, with `log`); `segments=1` answers with
// the segments it reads on demand: the count, `media.segments`, and the last two through
// `segments(count - 2, 5)` (clipped). `numbers=a|b|..` answers with how the SDK reads each
// (parseNumber/parseU32/fromFirstDigit), and `keys=k1,k2` with `config.get` of each key.
import { plugin, config, edit, fromFirstDigit, nowMs, parseNumber, parseU32, segmentCount, segments } from "@manifold/plugin-sdk";

export const { hlsMaster, hlsMedia, dashMpd } = plugin({
  hlsMedia(m, _v, cfg) {
    if (config.get(cfg, "segments") !== null) {
      const n = segmentCount();
      const tail = segments(n - 2, 5).map((s) => `${s.sequence}=${s.uri}`);
      const all = m.segments.map((s) => s.uri);
      return [edit.addTag(0, `#EXT-X-PROBE-SEGMENTS:${n};${all.join(",")};${tail.join(",")}`)];
    }
    const numbers = config.get(cfg, "numbers");
    if (numbers !== null) {
      const read = (n: string) => `${n}=${parseNumber(n)}/${parseU32(n)}/${fromFirstDigit(n)}`;
      return numbers.split("|").map((n) => edit.addTag(0, `#EXT-X-PROBE-NUMBER:${read(n)}`));
    }
    if (config.get(cfg, "keys") !== null) {
      return config.list(cfg, "keys").map((k) => edit.addTag(0, `#EXT-X-PROBE-GET:${k}=${config.get(cfg, k)}`));
    }
    const t = config.get(cfg, "throw");
    if (t === "error") throw new Error("an Error from TypeScript");
    if (t === "string") throw "a string from TypeScript";
    if (config.get(cfg, "console") !== null) console.log("probe", { at: 1 }, new Error("shown"));
    const tags = [edit.addTag(0, `#EXT-X-PROBE-RANDOM:${Math.random()}`)];
    if (config.get(cfg, "now") !== null) tags.push(edit.addTag(0, `#EXT-X-PROBE-NOW:${Date.now()},${nowMs()}`));
    return tags;
  },
});
