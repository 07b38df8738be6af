import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { sha3_256, shake256 } from '@noble/hashes/sha3.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { Aes128Gcm, CipherSuite, HkdfSha256 } from '@hpke/core';
import { XWing } from '@hpke/hybridkem-x-wing';
import { fromHex, hex } from '../attestation/bytes.ts';
import { webCryptoBackend, type CryptoBackend } from './backend.ts';
import {
  AEAD_AES_128_GCM,
  KDF_HKDF_SHA256,
  KEM_MLKEM768_X25519,
  deriveKemKeyPair,
  generateKemKeyPair,
  importKemPrivateKey,
  isSupportedSuite,
  keyScheduleValuesForTesting,
  setupAuthS,
  setupBaseR,
  setupBaseS,
  setupPSKR,
  setupPSKS,
  type SuiteIds,
} from './hpke.ts';
import { nodeBackend } from './node/backend-node.ts';
import { XWING_LABEL, combiner, decapXWing, encapXWing, xwingFromSeed } from './xwing.ts';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'vectors', 'protocol', 'xwing');
const read = (f: string) => new Uint8Array(readFileSync(join(DIR, f)));
const json = <T>(f: string): T => JSON.parse(new TextDecoder().decode(read(f))) as T;
const backends: CryptoBackend[] = [webCryptoBackend, nodeBackend];
const te = new TextEncoder();

/** The vendored files and their SHA-256, as PROVENANCE.md records them: a changed byte fails here first. */
const FILES: Record<string, string> = {
  'hpke-pq-wg-74dafaa6.json': 'ba1f90672903e0df25610a1eef84b5f157e44d34849c0a72a2f9b164f3213888',
  'hpke-pq-go-8aa8a04d.json': '963d5c3130d42d150ab0c70379c37b025effe0fa16efc9a15a9b5600a4981c95',
  'xwing-draft-9b6ce9e6.json': '409efe197550b22985b4a0419418a0c5f2c2b193426c55bd998399ec8d3e614d',
};

interface HpkePqVector {
  mode: number;
  kem_id: number;
  kdf_id: number;
  aead_id: number;
  info: string;
  ikmE: string;
  ikmR: string;
  skRm: string;
  pkRm: string;
  enc: string;
  shared_secret: string;
  suite_id: string;
  key: string;
  base_nonce: string;
  exporter_secret: string;
  encryptions: { aad: string; ct: string; nonce: string; pt: string }[];
  exports: { exporter_context: string; L: number; exported_value: string }[];
}

interface DraftVector {
  seed: string;
  eseed: string;
  ss: string;
  sk: string;
  pk: string;
  ct: string;
}

/**
 * Suites in draft-ietf-hpke-pq's vector file that gm does not implement: the pure ML-KEM KEMs (0x0040-0x0042), the
 * P-256/P-384 hybrids (0x0050, 0x0051), X448 (0x0021), and the HKDF-SHA384 and SHAKE/TurboSHAKE KDFs (0x0002,
 * 0x0010-0x0013), including X25519 and X-Wing under those KDFs. A vector of any other suite fails the test.
 */
const KNOWN_UNSUPPORTED = new Set([
  '64/1/1', '65/1/1', '66/2/2', '80/1/1', '81/2/2', '16/16/1', '17/17/2', '32/18/3', '33/19/3', '80/16/2', '25722/17/3', '66/19/1',
]);
const suiteOf = (v: HpkePqVector): SuiteIds => ({ kemId: v.kem_id, kdfId: v.kdf_id, aeadId: v.aead_id });
const idOf = (v: HpkePqVector) => `${v.kem_id}/${v.kdf_id}/${v.aead_id}`;

describe('vendored vector files', () => {
  it('are the bytes PROVENANCE.md records', () => {
    for (const [f, digest] of Object.entries(FILES)) expect(hex(sha256(read(f))), f).toBe(digest);
    const prov = readFileSync(join(DIR, 'PROVENANCE.md'), 'utf8');
    for (const [f, digest] of Object.entries(FILES)) {
      expect(prov).toContain(f);
      expect(prov).toContain(digest);
    }
  });
});

for (const file of ['hpke-pq-wg-74dafaa6.json', 'hpke-pq-go-8aa8a04d.json']) {
  describe(`draft-ietf-hpke-pq vectors (${file})`, () => {
    const vectors = json<HpkePqVector[]>(file);

    it('every vector is of a known kind: supported, or enumerated as unsupported', () => {
      expect(vectors).toHaveLength(13);
      for (const v of vectors) {
        expect(v.mode).toBe(0);
        if (isSupportedSuite(suiteOf(v))) expect(KNOWN_UNSUPPORTED.has(idOf(v))).toBe(false);
        else expect(KNOWN_UNSUPPORTED.has(idOf(v)), `unknown vector suite ${idOf(v)}`).toBe(true);
      }
      // The one runnable suite: X-Wing with HKDF-SHA256 and ChaCha20-Poly1305.
      expect(vectors.filter((v) => isSupportedSuite(suiteOf(v))).map(idOf)).toEqual(['25722/1/3']);
    });

    it('unsupported suites are refused with HPKE_UNSUPPORTED_SUITE', async () => {
      const kp = await generateKemKeyPair(KEM_MLKEM768_X25519);
      for (const v of vectors.filter((x) => !isSupportedSuite(suiteOf(x)))) {
        await expect(setupBaseS(suiteOf(v), kp.publicKey, new Uint8Array())).rejects.toMatchObject({ code: 'HPKE_UNSUPPORTED_SUITE' });
      }
    });

    for (const backend of backends) {
      it(`the X-Wing KEM reproduces DeriveKeyPair, Encap and Decap of every 0x647A vector, whatever its KDF (${backend.name})`, async () => {
        const xw = vectors.filter((v) => v.kem_id === KEM_MLKEM768_X25519);
        expect(xw).toHaveLength(2);
        for (const v of xw) {
          const derived = await deriveKemKeyPair(KEM_MLKEM768_X25519, fromHex(v.ikmR), backend);
          expect(hex(derived.publicKey)).toBe(v.pkRm);
          const imported = await importKemPrivateKey(KEM_MLKEM768_X25519, fromHex(v.skRm), backend);
          expect(hex(imported.publicKey)).toBe(v.pkRm);
          const e = await encapXWing(fromHex(v.pkRm), backend, fromHex(v.ikmE));
          expect(hex(e.enc)).toBe(v.enc);
          expect(hex(e.sharedSecret)).toBe(v.shared_secret);
          expect(hex(await decapXWing(fromHex(v.enc), derived as never))).toBe(v.shared_secret);
        }
      });

      it(`reproduces the runnable vector end to end: key schedule, ciphertexts, exports (${backend.name})`, async () => {
        const v = vectors.find((x) => isSupportedSuite(suiteOf(x)))!;
        const suite = suiteOf(v);
        const r = await deriveKemKeyPair(suite.kemId, fromHex(v.ikmR), backend);
        const info = fromHex(v.info);
        const sender = await setupBaseS(suite, r.publicKey, info, { backend, encapRandomness: fromHex(v.ikmE) });
        const receiver = await setupBaseR(suite, sender.enc, r, info, { backend });
        expect(hex(sender.enc)).toBe(v.enc);
        expect(v.suite_id).toBe(hex(Uint8Array.of(0x48, 0x50, 0x4b, 0x45, 0x64, 0x7a, 0x00, 0x01, 0x00, 0x03)));
        for (const ctx of [sender.context, receiver]) {
          const k = keyScheduleValuesForTesting(ctx);
          expect(hex(k.sharedSecret)).toBe(v.shared_secret);
          expect(hex(k.key)).toBe(v.key);
          expect(hex(k.baseNonce)).toBe(v.base_nonce);
          expect(hex(k.exporterSecret)).toBe(v.exporter_secret);
        }
        expect(v.encryptions).toHaveLength(10);
        // The vectors list sequence numbers 0, 1, 2, ... in order (nonce = base_nonce XOR seq).
        for (const e of v.encryptions) {
          expect(hex(await sender.context.seal(fromHex(e.aad), fromHex(e.pt)))).toBe(e.ct);
          expect(hex(await receiver.open(fromHex(e.aad), fromHex(e.ct)))).toBe(e.pt);
        }
        expect(v.exports.length).toBeGreaterThan(0);
        for (const x of v.exports) {
          expect(hex(sender.context.export(fromHex(x.exporter_context), x.L))).toBe(x.exported_value);
          expect(hex(receiver.export(fromHex(x.exporter_context), x.L))).toBe(x.exported_value);
        }
      });
    }
  });
}

describe('draft-connolly-cfrg-xwing-kem vectors (spec/test-vectors.json)', () => {
  const vectors = json<DraftVector[]>('xwing-draft-9b6ce9e6.json');

  for (const backend of backends) {
    it(`GenerateKeyPairDerand, EncapsulateDerand and Decapsulate match (${backend.name})`, async () => {
      expect(vectors).toHaveLength(3);
      for (const v of vectors) {
        expect(Object.keys(v).sort()).toEqual(['ct', 'eseed', 'pk', 'seed', 'sk', 'ss']);
        expect(v.sk).toBe(v.seed); // the decapsulation key is the seed itself
        const k = await xwingFromSeed(fromHex(v.sk), backend);
        expect(hex(k.publicKey)).toBe(v.pk);
        const e = await encapXWing(fromHex(v.pk), backend, fromHex(v.eseed));
        expect(hex(e.enc)).toBe(v.ct);
        expect(hex(e.sharedSecret)).toBe(v.ss);
        expect(hex(await decapXWing(fromHex(v.ct), k))).toBe(v.ss);
      }
    });
  }
});

describe('the combiner', () => {
  /** The components of a draft vector, computed with noble directly (FIPS 203 and RFC 7748, no X-Wing code). */
  function components(v: DraftVector) {
    const e = shake256(fromHex(v.seed), { dkLen: 96 });
    const skX = e.subarray(64, 96);
    const { secretKey: skM } = ml_kem768.keygen(e.subarray(0, 64));
    const ct = fromHex(v.ct);
    const ctX = ct.subarray(1088);
    const pkX = fromHex(v.pk).subarray(1184);
    return { ssM: ml_kem768.decapsulate(ct.subarray(0, 1088), skM), ssX: x25519.getSharedSecret(skX, ctX), ctX, pkX };
  }
  const cat = (...p: Uint8Array[]) => Uint8Array.from(p.flatMap((x) => [...x]));

  it('is SHA3-256(ss_M || ss_X || ct_X || pk_X || XWingLabel) and reproduces every vector', () => {
    expect(hex(XWING_LABEL)).toBe('5c2e2f2f5e5c');
    expect(XWING_LABEL).toEqual(te.encode('\\.//^\\'));
    for (const v of json<DraftVector[]>('xwing-draft-9b6ce9e6.json')) {
      const { ssM, ssX, ctX, pkX } = components(v);
      expect(hex(combiner(ssM, ssX, ctX, pkX))).toBe(v.ss);
      // The same with each backend's SHA3-256 (node:crypto's on servers).
      for (const b of [webCryptoBackend, nodeBackend]) expect(hex(combiner(ssM, ssX, ctX, pkX, b))).toBe(v.ss);
      expect(hex(sha3_256(cat(ssM, ssX, ctX, pkX, XWING_LABEL)))).toBe(v.ss);
    }
  });

  it('a wrong input order gives a different secret, so the vectors catch it (label first, as one implementation had it)', () => {
    for (const v of json<DraftVector[]>('xwing-draft-9b6ce9e6.json')) {
      const { ssM, ssX, ctX, pkX } = components(v);
      const wrong = [
        cat(XWING_LABEL, ssM, ssX, ctX, pkX), // label first
        cat(ssX, ssM, ctX, pkX, XWING_LABEL), // shared secrets swapped
        cat(ssM, ssX, pkX, ctX, XWING_LABEL), // ciphertext and public key swapped
      ];
      for (const w of wrong) expect(hex(sha3_256(w))).not.toBe(v.ss);
      // And the implementation under test is the spec order, not merely "some" order that round-trips.
      expect(hex(combiner(ssM, ssX, ctX, pkX))).not.toBe(hex(sha3_256(wrong[0]!)));
    }
  });

  it('refuses inputs of the wrong length', () => {
    const z = new Uint8Array(32);
    expect(() => combiner(new Uint8Array(31), z, z, z)).toThrow(expect.objectContaining({ code: 'HPKE_BAD_KEY' }));
  });
});

describe('cross-check with @hpke/hybridkem-x-wing (independent: its ML-KEM is the mlkem package)', () => {
  const XW: SuiteIds = { kemId: KEM_MLKEM768_X25519, kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM };
  const other = new CipherSuite({ kem: new XWing(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
  const info = te.encode('gm x-wing interop');

  for (const backend of backends) {
    it(`gm seals, @hpke opens (${backend.name})`, async () => {
      const rkp = await other.kem.generateKeyPair();
      const pk = new Uint8Array(await other.kem.serializePublicKey(rkp.publicKey));
      expect(pk.length).toBe(1216);
      const s = await setupBaseS(XW, pk, info, { backend });
      expect(s.enc.length).toBe(1120);
      const ct = await s.context.seal(te.encode('aad'), te.encode('a prompt'));
      const r = await other.createRecipientContext({ recipientKey: rkp, enc: s.enc, info });
      expect(new TextDecoder().decode(await r.open(ct, te.encode('aad')))).toBe('a prompt');
      const ex = new Uint8Array(await r.export(te.encode('ctx'), 32));
      expect(hex(s.context.export(te.encode('ctx'), 32))).toBe(hex(ex));
    });

    it(`@hpke seals, gm opens, from the same 32-byte private key (${backend.name})`, async () => {
      const seed = crypto.getRandomValues(new Uint8Array(32));
      const mine = await importKemPrivateKey(KEM_MLKEM768_X25519, seed, backend);
      const theirs = await other.kem.deserializePrivateKey(seed);
      const theirPk = await other.kem.deserializePublicKey(mine.publicKey);
      expect(hex(new Uint8Array(await other.kem.serializePublicKey(theirPk)))).toBe(hex(mine.publicKey));
      const s = await other.createSenderContext({ recipientPublicKey: theirPk, info });
      const ct = new Uint8Array(await s.seal(te.encode('a prompt'), te.encode('aad')));
      const r = await setupBaseR(XW, new Uint8Array(s.enc), mine, info, { backend });
      expect(new TextDecoder().decode(await r.open(te.encode('aad'), ct))).toBe('a prompt');
      // Its recipient opens with the key it imported from the same seed: the two expansions agree.
      const r2 = await other.createRecipientContext({ recipientKey: theirs, enc: s.enc, info });
      expect(hex(new Uint8Array(await r2.export(te.encode('x'), 16)))).toBe(hex(r.export(te.encode('x'), 16)));
    });
  }

  it('DeriveKeyPair differs only in the seed: the X-Wing draft hashes ikm bare, draft-ietf-hpke-pq labels it', async () => {
    const ikm = crypto.getRandomValues(new Uint8Array(32));
    const theirs = await other.kem.deriveKeyPair(ikm);
    const theirPk = hex(new Uint8Array(await other.kem.serializePublicKey(theirs.publicKey)));
    expect(hex((await xwingFromSeed(shake256(ikm, { dkLen: 32 }), nodeBackend)).publicKey)).toBe(theirPk);
    expect(hex((await deriveKemKeyPair(KEM_MLKEM768_X25519, ikm, nodeBackend)).publicKey)).not.toBe(theirPk);
  });
});

describe('X-Wing in HPKE: refusals', () => {
  const XW: SuiteIds = { kemId: KEM_MLKEM768_X25519, kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM };
  const info = te.encode('info');

  it('round-trips any plaintext in base and psk modes', async () => {
    const r = await generateKemKeyPair(KEM_MLKEM768_X25519, nodeBackend);
    const psk = crypto.getRandomValues(new Uint8Array(32));
    const pskId = te.encode('id');
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 40 }), async (pt, aad) => {
        const s = await setupBaseS(XW, r.publicKey, info);
        expect(await (await setupBaseR(XW, s.enc, r, info)).open(aad, await s.context.seal(aad, pt))).toEqual(pt);
        const p = await setupPSKS(XW, r.publicKey, info, psk, pskId);
        expect(await (await setupPSKR(XW, p.enc, r, info, psk, pskId)).open(aad, await p.context.seal(aad, pt))).toEqual(pt);
      }),
      { numRuns: 15 },
    );
  });

  it('has no auth modes (draft-ietf-hpke-pq-05 §7.2)', async () => {
    const r = await generateKemKeyPair(KEM_MLKEM768_X25519);
    await expect(setupAuthS(XW, r.publicKey, info, r)).rejects.toMatchObject({ code: 'HPKE_UNSUPPORTED_MODE' });
  });

  it('refuses wrong lengths, a key of the other KEM, and an ephemeral key pair in place of randomness', async () => {
    const r = await generateKemKeyPair(KEM_MLKEM768_X25519);
    const x = await generateKemKeyPair(0x0020);
    await expect(setupBaseS(XW, r.publicKey.subarray(1), info)).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
    await expect(setupBaseS(XW, x.publicKey, info)).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
    const s = await setupBaseS(XW, r.publicKey, info);
    await expect(setupBaseR(XW, s.enc.subarray(1), r, info)).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
    await expect(setupBaseR(XW, s.enc, x, info)).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
    await expect(setupBaseR({ ...XW, kemId: 0x0020 }, s.enc.subarray(0, 32), r, info)).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
    await expect(setupBaseS(XW, r.publicKey, info, { ephemeralKeyPair: x })).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
    await expect(setupBaseS(XW, r.publicKey, info, { encapRandomness: new Uint8Array(63) })).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
    await expect(setupBaseS({ ...XW, kemId: 0x0020 }, x.publicKey, info, { encapRandomness: new Uint8Array(64) })).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
  });

  it('refuses an ML-KEM encapsulation key that fails the FIPS 203 §7.2 modulus check (EncapError)', async () => {
    const r = await generateKemKeyPair(KEM_MLKEM768_X25519);
    const bad = r.publicKey.slice();
    bad[0] = 0xff; // the first 12-bit coefficient becomes >= q = 3329
    bad[1] = 0xff;
    await expect(setupBaseS(XW, bad, info)).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
  });

  it('refuses a low-order X25519 ciphertext (all-zero agreement)', async () => {
    const r = await generateKemKeyPair(KEM_MLKEM768_X25519, nodeBackend);
    const s = await setupBaseS(XW, r.publicKey, info);
    const enc = s.enc.slice();
    enc.fill(0, 1088); // u = 0 is a point of small order
    await expect(setupBaseR(XW, enc, r, info)).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
  });

  it('a flipped byte in either half of enc changes the secret (ML-KEM rejects implicitly): open fails', async () => {
    const r = await generateKemKeyPair(KEM_MLKEM768_X25519);
    const s = await setupBaseS(XW, r.publicKey, info);
    const ct = await s.context.seal(new Uint8Array(), te.encode('x'));
    for (const i of [0, 1087, 1088, 1119]) {
      const enc = s.enc.slice();
      enc[i]! ^= 1;
      const rc = await setupBaseR(XW, enc, r, info).catch((e: { code: string }) => e);
      if ('code' in rc) expect(rc.code).toBe('HPKE_BAD_KEY'); // a flipped u may land on a low-order point
      else await expect(rc.open(new Uint8Array(), ct)).rejects.toMatchObject({ code: 'HPKE_OPEN_FAILED' });
    }
  });

  it('a decapsulation key is usable again and again (the cached expansion is not consumed)', async () => {
    const r = await generateKemKeyPair(KEM_MLKEM768_X25519, nodeBackend);
    for (let i = 0; i < 3; i++) {
      const s = await setupBaseS(XW, r.publicKey, info);
      const rc = await setupBaseR(XW, s.enc, r, info);
      expect(keyScheduleValuesForTesting(rc).sharedSecret).toEqual(keyScheduleValuesForTesting(s.context).sharedSecret);
    }
  });

  for (const backend of [nodeBackend, webCryptoBackend]) {
    it(`a public key array changed in place after use is parsed again, aligned or not (${backend.name})`, async () => {
      const a = await generateKemKeyPair(KEM_MLKEM768_X25519, backend);
      const b = await generateKemKeyPair(KEM_MLKEM768_X25519, backend);
      const aligned = a.publicKey.slice();
      const unaligned = new Uint8Array(a.publicKey.length + 1).subarray(1);
      unaligned.set(a.publicKey);
      for (const pk of [aligned, unaligned]) {
        const first = await encapXWing(pk, backend);
        expect(hex(await decapXWing(first.enc, a as Parameters<typeof decapXWing>[1]))).toBe(hex(first.sharedSecret));
        // The same array now holds another key: the encapsulation must be to the bytes as they are now.
        pk.set(b.publicKey);
        const second = await encapXWing(pk, backend);
        expect(hex(await decapXWing(second.enc, b as Parameters<typeof decapXWing>[1]))).toBe(hex(second.sharedSecret));
      }
    });
  }

  it('exposes no private material as properties', async () => {
    const r = await generateKemKeyPair(KEM_MLKEM768_X25519);
    expect(Object.keys(r).sort()).toEqual(['backend', 'kind', 'publicKey']);
  });
});
