/**
 * On-disk cache of collateral items: `<sha256(key)>.body` and `<sha256(key)>.json` (metadata with the item's own
 * expiry). Written to a temporary name and renamed, so a crash never leaves a half item that would be served.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hex, sha256 } from '../../attestation/bytes.ts';

export interface CachedItem {
  readonly url: string;
  readonly status: number;
  readonly contentType: string | undefined;
  /** Collateral-bearing vendor headers (Intel issuer chains). */
  readonly headers: Readonly<Record<string, string>>;
  readonly fetchedAt: string;
  readonly expiresAt: string;
  readonly body: Uint8Array;
}

export class DiskStore {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  async #name(key: string): Promise<string> {
    return join(this.dir, hex(await sha256(new TextEncoder().encode(key))));
  }

  async get(key: string): Promise<CachedItem | undefined> {
    const base = await this.#name(key);
    try {
      const meta = JSON.parse(await readFile(`${base}.json`, 'utf8')) as Omit<CachedItem, 'body'> & { key: string };
      if (meta.key !== key) return undefined;
      const body = new Uint8Array(await readFile(`${base}.body`));
      return { ...meta, body };
    } catch {
      return undefined;
    }
  }

  async put(key: string, item: CachedItem): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const base = await this.#name(key);
    const tmp = `${base}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    const { body, ...meta } = item;
    // Body first, metadata last: the metadata's presence is what makes an item visible.
    await writeFile(`${tmp}.body`, body);
    await rename(`${tmp}.body`, `${base}.body`);
    await writeFile(`${tmp}.json`, JSON.stringify({ ...meta, key }));
    await rename(`${tmp}.json`, `${base}.json`);
  }
}
