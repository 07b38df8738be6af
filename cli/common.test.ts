/**
 * The client commands' trust directory (cli/common.ts loadTrust): one that holds no anchor lets a command go on (sim
 * evidence needs none; real evidence is then refused by the verifier), but a broken one stops it with its code before
 * it contacts the enclave.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hasTrustAnchors, TRUST_DIR } from '../test/vectors.ts';
import type { Io } from './io.ts';
import { main } from './main.ts';

const dir = mkdtempSync(join(tmpdir(), 'gm-cli-trust-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bad = join(dir, 'bad');
const notDir = join(dir, 'a-file');
writeFileSync(notDir, 'not a directory');
const empty = join(dir, 'empty');
mkdirSync(empty);
/** Nothing listens there: a command that got past its trust directory fails on the network (ATTESTATION_UNREACHABLE). */
const enclave = 'http://127.0.0.1:9';

/** `gm ARGV` in process with GM_TRUST_DIR: its exit code, and the code and message of the error it ends with. */
async function gm(trustDir: string, argv: readonly string[]): Promise<{ exit: number; code: string | undefined; message: string }> {
  let err = '';
  const io: Io = { out: () => {}, err: (s) => void (err += s), readFile: async () => new Uint8Array(), env: { GM_TRUST_DIR: trustDir } };
  const exit = await main(argv, io);
  const last = err.trim().split('\n').at(-1) ?? '';
  const m = /^gm [a-z]+: ([A-Z][A-Z0-9_]+): (.*)$/.exec(last);
  return { exit, code: m?.[1], message: m?.[2] ?? last };
}

const commands: readonly (readonly string[])[] = [
  ['chat', '--url', enclave, '--allow-sim', 'hello'],
  ['verify', enclave, '--allow-sim'],
  ['proxy', '--url', enclave, '--allow-sim', '--listen', '127.0.0.1:0'],
];

describe('gm chat, gm verify and gm proxy read the trust directory fail-closed', () => {
  it.skipIf(!hasTrustAnchors)('a certificate that fails its pin stops the command (TRUST_PIN_MISMATCH) instead of going on without anchors', async () => {
    cpSync(TRUST_DIR, bad, { recursive: true });
    writeFileSync(join(bad, 'amd/ask_ark_genoa.pem'), readFileSync(join(TRUST_DIR, 'amd/ask_ark_milan.pem')));
    for (const argv of commands) {
      const r = await gm(bad, argv);
      expect(r, argv.join(' ')).toMatchObject({ exit: 2, code: 'TRUST_PIN_MISMATCH' });
      expect(r.message, argv.join(' ')).toContain('amd/ask_ark_genoa.pem');
      // The pinned roots let it past, to the enclave it cannot reach.
      expect(await gm(TRUST_DIR, argv), argv.join(' ')).toMatchObject({ exit: 1, code: 'ATTESTATION_UNREACHABLE' });
    }
  });

  it('a trust directory that cannot be read stops the command (TRUST_DIR_UNREADABLE); one absent or empty does not', async () => {
    for (const argv of commands) {
      expect(await gm(notDir, argv), argv.join(' ')).toMatchObject({ exit: 2, code: 'TRUST_DIR_UNREADABLE' });
      for (const d of [join(dir, 'absent'), empty]) expect(await gm(d, argv), `${argv.join(' ')} ${d}`).toMatchObject({ exit: 1, code: 'ATTESTATION_UNREACHABLE' });
    }
  });
});
