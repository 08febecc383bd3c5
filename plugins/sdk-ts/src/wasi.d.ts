// The one WASI interface the SDK imports itself (build.mjs adds it to the world): a per-call
// seed for Math.random(). Manifold's host answers it from the OS's randomness.
declare module "wasi:random/random@0.2.0" {
  export function getRandomBytes(len: number): Uint8Array;
}
