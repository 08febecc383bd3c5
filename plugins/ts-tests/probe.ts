// A test plugin: what a QuickJS plugin sees of the host's WASI subset. Its media call answers
// with tags naming Math.random() and, with `now=1` in the config, Date.now(); `throw=error`
// throws an Error, `throw=string` a string (both must come back as the plugin's own error);
// `console=1` writes to console.log (the tenant's log, with `log`).
import { plugin, config, edit, nowMs } from "@manifold/plugin-sdk";

export const { hlsMaster, hlsMedia, dashMpd } = plugin({
  hlsMedia(_m, _v, cfg) {
    const t = config.get(cfg, "throw");
    if (t === "error") throw new Error("an Error from TypeScript");
    if (t === "string") throw "a string from TypeScript";
    if (config.get(cfg, "console") !== null) console.log("probe", { at: 1 }, new Error("shown"));
    const tags = [edit.addTag(0, `#EXT-X-PROBE-RANDOM:${Math.random()}`)];
    if (config.get(cfg, "now") !== null) tags.push(edit.addTag(0, `#EXT-X-PROBE-NOW:${Date.now()},${nowMs()}`));
    return tags;
  },
});
