/**
 * Access to ../shared/vectors and ../shared/trust-anchors for tests. The folders are read in place (never copied).
 * When absent, tests skip with a visible reason, unless GM_REQUIRE_VECTORS=1, in which case they fail.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTrustStore, type TrustStore } from '../attestation/trust.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const VECTORS_DIR = resolve(process.env.GM_VECTORS ?? join(root, '..', 'shared', 'vectors'));
export const TRUST_DIR = resolve(process.env.GM_TRUST_DIR ?? join(root, '..', 'shared', 'trust-anchors'));
const REQUIRED = process.env.GM_REQUIRE_VECTORS === '1';

function available(dir: string, what: string): boolean {
  if (existsSync(dir)) return true;
  if (REQUIRED) throw new Error(`GM_REQUIRE_VECTORS=1 but the ${what} folder ${dir} is missing`);
  console.warn(`[gm tests] SKIPPING tests that need ${what}: ${dir} is missing (set GM_VECTORS / GM_TRUST_DIR)`);
  return false;
}

/** True when the shared vectors are present; throws when required but missing. Use with `describe.skipIf(!hasVectors)`. */
export const hasVectors = available(VECTORS_DIR, 'shared vectors');
export const hasTrustAnchors = available(TRUST_DIR, 'shared trust anchors');

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
/** The trust store loaded (and pin-checked) from GM_TRUST_DIR. */
export function trustStore(): Promise<TrustStore> {
  store ??= loadTrustStore(TRUST_DIR, fsp);
  return store;
}
