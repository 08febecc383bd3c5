#!/usr/bin/env node
// Builds a TypeScript plugin into a component of the lean-session-plugin world (manifold:plugin@0.2.3):
//   node build.mjs plugin.ts -o plugin.wasm [--stub-wasi] [--no-check]
// 1. type-checks it against the types generated from wit/ (tsc),
// 2. bundles it with the SDK into one ES module (esbuild; the host's interfaces stay imports),
// 3. makes the component with QuickJS (componentize-qjs), pre-initialized by Wizer at build
//    time, so an instance starts from the initialized heap.
// Without --stub-wasi the component imports the WASI its runtime uses; Manifold gives it the
// clocks (with the `clock` capability), random seeds and an empty environment, and traps the
// rest. --stub-wasi builds a component with no WASI imports at all (Date.now() and
// Math.random() then trap).
import { build } from "esbuild";
import { componentize } from "componentize-qjs";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve, basename } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (f) => {
  const i = args.indexOf(f);
  return i >= 0 ? args.splice(i, 1).length > 0 : false;
};
const opt = (f) => {
  const i = args.indexOf(f);
  return i >= 0 ? args.splice(i, 2)[1] : undefined;
};
const stubWasi = flag("--stub-wasi");
const noCheck = flag("--no-check");
const entry = args[0];
const out = opt("-o") ?? (entry && entry.replace(/\.ts$/, "") + ".wasm");
if (!entry || args.length !== 1 || !existsSync(entry)) {
  console.error("usage: build.mjs plugin.ts [-o plugin.wasm] [--stub-wasi] [--no-check]");
  process.exit(2);
}
const contract = resolve(here, "../../wit/plugin.wit");
// The world built: the contract's lean-session-plugin world (session-plugin, with the
// segments read on demand) plus the WASI random the SDK seeds
// Math.random() from (Manifold's host answers it; any other WASI import traps).
const WORLD = `package manifold:sdk-ts@0.2.3;
world ts-plugin {
  include manifold:plugin/lean-session-plugin@0.2.3;
  import wasi:random/random@0.2.0;
}
`;
const RANDOM = `package wasi:random@0.2.0;
interface random {
  get-random-bytes: func(len: u64) -> list<u8>;
  get-random-u64: func() -> u64;
}
`;
const sdk = join(here, "src/sdk.ts");

if (!noCheck) {
  // the plugin checked on its own, with the SDK and the generated types
  const dir = mkdtempSync(join(tmpdir(), "manifold-tsc-"));
  const tsconfig = join(dir, "tsconfig.json");
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(here, "tsconfig.json"),
      compilerOptions: { paths: { "@manifold/plugin-sdk": [sdk] } },
      files: [join(here, "types/lean-session-plugin.d.ts"), join(here, "src/wasi.d.ts"), resolve(entry)],
      include: [],
    }),
  );
  try {
    execFileSync(join(here, "node_modules/.bin/tsc"), ["-p", tsconfig], { stdio: "inherit" });
  } catch {
    console.error(`build: ${entry} does not type-check`);
    process.exit(1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const bundle = await build({
  entryPoints: [entry],
  bundle: true,
  write: false,
  format: "esm",
  target: "es2022",
  platform: "neutral",
  alias: { "@manifold/plugin-sdk": sdk },
  external: ["manifold:*", "wasi:*"],
  logLevel: "error",
});
const js = bundle.outputFiles[0].text;
// the bundle is the module Wizer evaluates; it imports nothing but the host's interfaces
const work = mkdtempSync(join(tmpdir(), "manifold-js-"));
const jsPath = join(work, basename(entry).replace(/\.ts$/, ".js"));
writeFileSync(jsPath, js);
const wit = join(work, "wit");
mkdirSync(join(wit, "deps/manifold-plugin"), { recursive: true });
mkdirSync(join(wit, "deps/wasi-random"), { recursive: true });
writeFileSync(join(wit, "world.wit"), WORLD);
writeFileSync(join(wit, "deps/manifold-plugin/plugin.wit"), readFileSync(contract));
writeFileSync(join(wit, "deps/wasi-random/random.wit"), RANDOM);
let component;
try {
  ({ component } = await componentize({
    witPath: wit,
    jsSource: js,
    jsPath,
    moduleRoot: work,
    world: "ts-plugin",
    stubWasi,
    sync: true,
  }));
} finally {
  rmSync(work, { recursive: true, force: true });
}
writeFileSync(out, component);
console.error(`build: ${out} (${(component.length / 1024 / 1024).toFixed(2)} MiB)`);
