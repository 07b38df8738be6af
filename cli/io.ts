/** CLI input/output: injectable so commands are tested in process. */
import { readFile } from 'node:fs/promises';
import { fromHex } from '../attestation/bytes.ts';
import { configError } from '../attestation/errors.ts';

export interface Io {
  out(s: string): void;
  err(s: string): void;
  readFile(path: string): Promise<Uint8Array>;
  env: Readonly<Record<string, string | undefined>>;
}

export const nodeIo: Io = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
  readFile: async (p) => {
    try {
      return new Uint8Array(await readFile(p));
    } catch (e) {
      throw configError('FILE_UNREADABLE', `cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
  },
  env: process.env,
};

/** A binary file, or the same bytes written as hex text (whitespace ignored). */
export function binaryOrHex(bytes: Uint8Array): Uint8Array {
  const text = new TextDecoder().decode(bytes.subarray(0, Math.min(bytes.length, 4096)));
  if (bytes.length > 0 && /^[0-9a-fA-F\s]+$/.test(text)) {
    const all = new TextDecoder().decode(bytes).replace(/\s+/g, '');
    if (/^[0-9a-fA-F]*$/.test(all) && all.length % 2 === 0) return fromHex(all);
  }
  return bytes;
}
