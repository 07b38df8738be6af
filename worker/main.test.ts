import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../cli/main.ts';
import { TRUST_DIR, hasTrustAnchors } from '../test/vectors.ts';
import { hex } from '../attestation/bytes.ts';
import { createNvidiaSimSigner } from '../attestation/nvidia/sim.ts';
import { gpusFromFlags, hotkeySeedFrom, identityFromFlags, termsFromFlags } from './main.ts';
import { gpusOfEvidence, statingGpus } from './offers.ts';

const code = (f: Parameters<typeof termsFromFlags>[0]) => {
  try {
    return termsFromFlags(f);
  } catch (e) {
    return (e as { code?: string }).code;
  }
};

describe('gm worker model identity flags', () => {
  it('sim derives a weights digest per model and quantization; the flags set the rest; a real worker needs --weights-digest', () => {
    const id = identityFromFlags({ quantization: 'fp8', engine: 'sglang/0.4.1', 'context-length': '8192', parameters: 'tools,seed,tools' }, true)!;
    const a = id('model-a');
    expect(a).toMatchObject({ quantization: 'fp8', engine: 'sglang', engineVersion: '0.4.1', contextLength: 8192, parameters: ['seed', 'tools'] });
    expect(hex(a.weightsDigest)).not.toBe(hex(id('model-b').weightsDigest));
    expect(hex(a.weightsDigest)).toBe(hex(identityFromFlags({ quantization: 'fp8' }, true)!('model-a').weightsDigest));
    expect(hex(a.weightsDigest)).not.toBe(hex(identityFromFlags({ quantization: 'bf16' }, true)!('model-a').weightsDigest));
    expect(identityFromFlags({}, false)).toBeUndefined();
    expect(hex(identityFromFlags({ 'weights-digest': 'AB'.repeat(32) }, false)!('m').weightsDigest)).toBe('ab'.repeat(32));
  });

  it('refuses malformed identity flags at start', () => {
    const c = (f: Parameters<typeof identityFromFlags>[0]) => {
      try {
        identityFromFlags(f, true);
        return 'ok';
      } catch (e) {
        return (e as { code?: string }).code;
      }
    };
    expect(c({ 'weights-digest': 'abc' })).toBe('USAGE');
    expect(c({ engine: 'vllm' })).toBe('USAGE');
    expect(c({ quantization: 'FP8' })).toBe('USAGE');
    expect(c({ parameters: 'tools,teleport' })).toBe('USAGE');
    expect(c({ 'context-length': '0' })).toBe('USAGE');
  });
});

describe('gm worker GPUs in offers', () => {
  it('--gpu-count and --gpu-model together state a fixed count and model; neither states what the evidence showed', () => {
    const collected = () => ({ count: 3, model: 'from evidence' });
    expect(gpusFromFlags({ 'gpu-count': '8', 'gpu-model': 'GH100 A01 GSP BROM' }, collected)()).toEqual({ count: 8, model: 'GH100 A01 GSP BROM' });
    expect(gpusFromFlags({}, collected)()).toEqual({ count: 3, model: 'from evidence' });
    const c = (f: Parameters<typeof gpusFromFlags>[0]) => {
      try {
        gpusFromFlags(f, collected);
        return 'ok';
      } catch (e) {
        return (e as { code?: string }).code;
      }
    };
    expect([c({ 'gpu-count': '2' }), c({ 'gpu-model': 'x' }), c({ 'gpu-count': '0', 'gpu-model': 'x' }), c({ 'gpu-count': '65', 'gpu-model': 'x' }), c({ 'gpu-count': '1', 'gpu-model': 'x'.repeat(65) })]).toEqual(['USAGE', 'USAGE', 'USAGE', 'USAGE', 'USAGE']);
  });

  it("the evidence's statement: the count and the device certificate issuer's CN; nothing for mixed models or a bad chain", async () => {
    const s = await createNvidiaSimSigner({ now: new Date() });
    const gpu = (leaf: Uint8Array) => ({ arch: 'HOPPER' as const, evidence: new Uint8Array(0), certs: [leaf, s.intermediate.der, s.root.der], ccMode: 'on' as const });
    expect(gpusOfEvidence([gpu(s.leaf.der), gpu(s.leaf.der)])).toEqual({ count: 2, model: 'SIM GH100 A01 GSP BROM' });
    // The intermediate is issued by the root: another name, so the two GPUs state no single model.
    expect(gpusOfEvidence([gpu(s.leaf.der), gpu(s.intermediate.der)])).toBeUndefined();
    expect(gpusOfEvidence([gpu(new Uint8Array([0x30, 0x00]))])).toBeUndefined();
    expect(gpusOfEvidence([])).toBeUndefined();
    // statingGpus records what each collection showed, for the offers signed after it.
    const src = statingGpus(async () => [gpu(s.leaf.der)]);
    expect(src.stated()).toBeUndefined();
    await src.source(new Uint8Array(32));
    expect(src.stated()).toEqual({ count: 1, model: 'SIM GH100 A01 GSP BROM' });
  });
});

describe('gm worker --terms', () => {
  it('per-request by default; prepaid; postpaid with its credit limit and settlement period', () => {
    expect(termsFromFlags({})).toEqual({ kind: 'per-request' });
    expect(termsFromFlags({ terms: 'prepaid' })).toEqual({ kind: 'prepaid' });
    expect(termsFromFlags({ terms: 'postpaid', 'credit-limit': '5000000', 'settlement-seconds': '86400' })).toEqual({ kind: 'postpaid', creditLimit: 5_000_000n, settlementPeriodSeconds: 86400 });
  });

  it('refuses incomplete, out-of-range or meaningless combinations as usage errors', () => {
    expect(code({ terms: 'postpaid' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '1' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '-1', 'settlement-seconds': '60' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '1.5', 'settlement-seconds': '60' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '9007199254740992', 'settlement-seconds': '60' })).toBe('USAGE');
    expect(code({ terms: 'postpaid', 'credit-limit': '1', 'settlement-seconds': '0' })).toBe('USAGE');
    expect(code({ terms: 'prepaid', 'credit-limit': '1' })).toBe('USAGE');
    expect(code({ terms: 'monthly' })).toBe('USAGE');
  });

  it('--min-charge and --discounts add the price terms to any kind, checked as a signed offer would be', () => {
    expect(termsFromFlags({ terms: 'prepaid', 'min-charge': '2500', discounts: '1000:1000, 10000:2500' })).toEqual({ kind: 'prepaid', minCharge: 2500n, discounts: [{ fromOutputTokens: 1000, basisPoints: 1000 }, { fromOutputTokens: 10_000, basisPoints: 2500 }] });
    expect(termsFromFlags({ terms: 'postpaid', 'credit-limit': '5', 'settlement-seconds': '60', 'min-charge': '1' })).toEqual({ kind: 'postpaid', creditLimit: 5n, settlementPeriodSeconds: 60, minCharge: 1n });
    expect(code({ 'min-charge': '0' })).toBe('USAGE');
    expect(code({ 'min-charge': '1.5' })).toBe('USAGE');
    expect(code({ discounts: '10000:2500,1000:1000' })).toBe('USAGE'); // unsorted
    expect(code({ discounts: '1000:100,1000:200' })).toBe('USAGE'); // overlapping
    expect(code({ discounts: '1000:10001' })).toBe('USAGE');
    expect(code({ discounts: '1000-100' })).toBe('USAGE');
  });
});

describe('gm worker hotkey seed', () => {
  const SEED = 'ab'.repeat(32);
  const files = (m: Record<string, { text: string; mode: number }>) => ({
    io: { readFile: async (p: string) => new TextEncoder().encode(m[p]!.text) },
    modeOf: async (p: string) => {
      if (!m[p]) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      return 0o100000 | m[p].mode;
    },
  });
  const codeOf = async (p: Promise<unknown>) => p.then(() => 'OK', (e: { code?: string }) => e.code);

  it('is read from an owner-only file or from GM_HOTKEY_SEED; a file others can read is refused', async () => {
    const { io, modeOf } = files({ '/s': { text: `${SEED}\n`, mode: 0o600 }, '/open': { text: SEED, mode: 0o644 }, '/bad': { text: 'zz', mode: 0o400 } });
    expect(await hotkeySeedFrom({ 'hotkey-seed-file': '/s' }, io, modeOf)).toEqual(new Uint8Array(32).fill(0xab));
    expect(await hotkeySeedFrom({ 'hotkey-seed': SEED }, io, modeOf)).toEqual(new Uint8Array(32).fill(0xab)); // GM_HOTKEY_SEED
    expect(await hotkeySeedFrom({}, io, modeOf)).toBeUndefined();
    expect(await codeOf(hotkeySeedFrom({ 'hotkey-seed-file': '/open' }, io, modeOf))).toBe('HOTKEY_SEED_FILE_EXPOSED');
    expect(await codeOf(hotkeySeedFrom({ 'hotkey-seed-file': '/bad' }, io, modeOf))).toBe('USAGE');
    expect(await codeOf(hotkeySeedFrom({ 'hotkey-seed-file': '/none' }, io, modeOf))).toBe('FILE_UNREADABLE');
    expect(await codeOf(hotkeySeedFrom({ 'hotkey-seed-file': '/s', 'hotkey-seed': SEED }, io, modeOf))).toBe('USAGE');
  });

  it('reads a Bittensor wallet hotkey file (secretSeed), checking it derives the ss58Address it names', async () => {
    // Substrate's //Alice: mini-secret e5be9a50...5c0a, sr25519 public key d43593c7...a27d, SS58 5Grwva...utQY.
    const alice = { secretSeed: '0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a', publicKey: '0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d', ss58Address: '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY' };
    const keyfile = (o: object) => JSON.stringify({ accountId: alice.publicKey, privateKey: `0x${'11'.repeat(64)}`, secretPhrase: null, ...o });
    const { io, modeOf } = files({
      '/w/miner/hotkeys/default': { text: keyfile(alice), mode: 0o600 },
      '/w/miner/hotkeys/wrong': { text: keyfile({ ...alice, ss58Address: '5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty' }), mode: 0o600 },
      '/w/miner/hotkeys/locked': { text: '$NACL...', mode: 0o600 },
      '/w/miner/hotkeys/open': { text: keyfile(alice), mode: 0o644 },
      '/w/miner/hotkeys/noseed': { text: keyfile({ ...alice, secretSeed: null }), mode: 0o600 },
    });
    const seed = await hotkeySeedFrom({ wallet: 'miner', hotkey: 'default', 'wallet-path': '/w' }, io, modeOf);
    expect(hex(seed!)).toBe(alice.secretSeed.slice(2));
    expect(await codeOf(hotkeySeedFrom({ wallet: 'miner', hotkey: 'wrong', 'wallet-path': '/w' }, io, modeOf))).toBe('WALLET_KEY_MISMATCH');
    expect(await codeOf(hotkeySeedFrom({ wallet: 'miner', hotkey: 'locked', 'wallet-path': '/w' }, io, modeOf))).toBe('WALLET_ENCRYPTED');
    expect(await codeOf(hotkeySeedFrom({ wallet: 'miner', hotkey: 'open', 'wallet-path': '/w' }, io, modeOf))).toBe('HOTKEY_SEED_FILE_EXPOSED');
    expect(await codeOf(hotkeySeedFrom({ wallet: 'miner', hotkey: 'noseed', 'wallet-path': '/w' }, io, modeOf))).toBe('WALLET_MALFORMED');
    expect(await codeOf(hotkeySeedFrom({ wallet: 'miner', hotkey: '..', 'wallet-path': '/w' }, io, modeOf))).toBe('USAGE');
    expect(await codeOf(hotkeySeedFrom({ wallet: 'miner', 'wallet-path': '/w' }, io, modeOf))).toBe('USAGE');
    expect(await codeOf(hotkeySeedFrom({ wallet: 'miner', hotkey: 'default', 'hotkey-seed': SEED }, io, modeOf))).toBe('USAGE');
  });

  it('gm worker refuses the seed on the command line, in either form, before anything else runs, without echoing it', async () => {
    for (const given of [['--hotkey-seed', SEED], [`--hotkey-seed=${SEED}`]]) {
      let out = '';
      let err = '';
      const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s), readFile: async () => new Uint8Array(), env: {} };
      expect(await main(['worker', '--upstream', 'http://127.0.0.1:1', '--enclave', 'http://127.0.0.1:2', '--tee', 'sim', ...given, '--json'], io)).toBe(2);
      expect(err).toMatch(/^gm worker: HOTKEY_SEED_ON_ARGV: [^\n]+\n$/);
      expect(JSON.parse(out).error.code).toBe('HOTKEY_SEED_ON_ARGV');
      expect(out + err).not.toContain(SEED);
      expect(out + err).not.toContain('listening');
    }
  });

  it('gm worker reads --enclave-policy before it starts: a policy that does not parse stops it with POLICY_INVALID', async () => {
    for (const [text, why] of [['{"sev-snp": ', /not valid JSON/], ['{"sev-snp": {"measurements": ["' + 'ab'.repeat(48) + '"]}, "teleport": true}', /unknown field "teleport"/]] as const) {
      let out = '';
      let err = '';
      const read: string[] = [];
      const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s), readFile: async (p: string) => (read.push(p), new TextEncoder().encode(text)), env: {} };
      expect(await main(['worker', '--upstream', 'http://127.0.0.1:1', '--enclave', 'http://127.0.0.1:2', '--tee', 'sim', '--enclave-policy', '/etc/gm/enclave-policy.json', '--json'], io)).toBe(2);
      expect(read).toEqual(['/etc/gm/enclave-policy.json']);
      expect(JSON.parse(out).error.code).toBe('POLICY_INVALID');
      expect(err).toMatch(why);
      expect(out + err).not.toContain('listening');
    }
  });
});

describe('gm worker trust directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gm-worker-trust-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const tsm = join(dir, 'tsm'); // a configfs-tsm root that exists: --tee configfs takes the real provider
  mkdirSync(tsm);
  const policy = JSON.stringify({ 'sev-snp': { measurements: ['ab'.repeat(48)], allowDebug: false } });
  /** `gm worker` with these flags and GM_TRUST_DIR; the seed is withheld, so a worker that got past its checks stops there. */
  async function worker(trustDir: string, flags: readonly string[]) {
    let out = '';
    let err = '';
    const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s), readFile: async () => new TextEncoder().encode(policy), env: { GM_TRUST_DIR: trustDir } };
    const exit = await main(['worker', '--upstream', 'http://127.0.0.1:1', '--enclave', 'http://127.0.0.1:2', ...flags, '--json'], io);
    expect(out + err).not.toContain('listening');
    return { exit, code: (JSON.parse(out) as { error: { code: string } }).error.code, err };
  }
  const real = ['--tee', 'configfs', '--configfs-root', tsm, '--gpu-evidence-cmd', 'true', '--enclave-policy', '/etc/gm/enclave-policy.json'];

  it('a real worker whose trust directory is missing or empty does not start: TRUST_ANCHOR_MISSING, naming the directory', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    for (const d of [join(dir, 'absent'), empty]) {
      const r = await worker(d, real);
      expect(r).toMatchObject({ exit: 2, code: 'TRUST_ANCHOR_MISSING' });
      expect(r.err).toContain(d);
      expect(r.err).toContain('gm trust import');
    }
  });

  it.skipIf(!hasTrustAnchors)('a real worker refuses a trust directory holding a certificate that fails its pin, and starts past it with the pinned roots', async () => {
    const bad = join(dir, 'bad');
    cpSync(TRUST_DIR, bad, { recursive: true });
    writeFileSync(join(bad, 'amd/ask_ark_genoa.pem'), readFileSync(join(TRUST_DIR, 'amd/ask_ark_milan.pem')));
    expect(await worker(bad, real)).toMatchObject({ exit: 2, code: 'TRUST_PIN_MISMATCH' });
    // With the pinned roots the trust check passes: the next missing piece (no hotkey seed) is what stops it.
    const r = await worker(TRUST_DIR, real);
    expect(r).toMatchObject({ exit: 2, code: 'USAGE' });
    expect(r.err).toContain('hotkey seed');
    // A sim worker on the sim policy reads no trust directory; given an --enclave-policy (a real enclave may pass it) it does.
    expect(await worker(bad, ['--tee', 'sim', '--terms', 'monthly'])).toMatchObject({ exit: 2, code: 'USAGE' });
    expect(await worker(join(dir, 'absent'), ['--tee', 'sim', '--terms', 'monthly'])).toMatchObject({ exit: 2, code: 'USAGE' });
    expect(await worker(bad, ['--tee', 'sim', '--enclave-policy', '/etc/gm/enclave-policy.json', '--terms', 'monthly'])).toMatchObject({ exit: 2, code: 'TRUST_PIN_MISMATCH' });
  });
});
