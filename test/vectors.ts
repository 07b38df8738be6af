/**
 * Access to the vendored test vectors (test/vectors, see its PROVENANCE.md) and vendor roots (trust/, see its README)
 * for tests and benches. GM_VECTORS and GM_TRUST_DIR point at other copies with the same layout.
 *
 * Both folders are part of the repository, so a missing one is an error by default. GM_REQUIRE_VECTORS=0 is the one
 * way to let the tests that need them skip (visibly), for a copy of the sources that leaves the data out.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTrustStore, type TrustStore } from '../attestation/trust.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const VECTORS_DIR = resolve(process.env.GM_VECTORS ?? join(root, 'test', 'vectors'));
export const TRUST_DIR = resolve(process.env.GM_TRUST_DIR ?? join(root, 'trust'));
const REQUIRED = process.env.GM_REQUIRE_VECTORS !== '0';

function available(dir: string, what: string, env: string): boolean {
  if (existsSync(dir)) return true;
  if (REQUIRED) throw new Error(`the ${what} folder ${dir} is missing (set ${env}, or GM_REQUIRE_VECTORS=0 to skip the tests that need it)`);
  console.warn(`[gm tests] SKIPPING tests that need the ${what}: ${dir} is missing (GM_REQUIRE_VECTORS=0)`);
  return false;
}

/** True when the vectors are present; throws when missing unless GM_REQUIRE_VECTORS=0. Use with `describe.skipIf(!hasVectors)`. */
export const hasVectors = available(VECTORS_DIR, 'test vectors', 'GM_VECTORS');
export const hasTrustAnchors = available(TRUST_DIR, 'vendor trust anchors', 'GM_TRUST_DIR');

export function vector(rel: string): Uint8Array {
  return new Uint8Array(readFileSync(join(VECTORS_DIR, rel)));
}
export function vectorText(rel: string): string {
  return readFileSync(join(VECTORS_DIR, rel), 'utf8');
}
export function vectorPath(rel: string): string {
  return join(VECTORS_DIR, rel);
}

let store: Promise<TrustStore> | undefined;
/** The trust store loaded (and pin-checked) from TRUST_DIR. */
export function trustStore(): Promise<TrustStore> {
  store ??= loadTrustStore(TRUST_DIR, fsp);
  return store;
}
