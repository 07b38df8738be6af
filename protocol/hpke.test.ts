import { describe, expect, it } from 'vitest';
import { Aes128Gcm, Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, ExportOnly, HkdfSha256 } from '@hpke/core';
import { Chacha20Poly1305 } from '@hpke/chacha20poly1305';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { fromHex, hex } from '../attestation/bytes.ts';
import { hasVectors, vectorText } from '../test/vectors.ts';
import { webCryptoBackend, type CryptoBackend } from './backend.ts';
import {
  AEAD_AES_128_GCM,
  AEAD_AES_256_GCM,
  AEAD_CHACHA20_POLY1305,
  AEAD_EXPORT_ONLY,
  KDF_HKDF_SHA256,
  KEM_MLKEM768_X25519,
  KEM_X25519_HKDF_SHA256,
  MAX_SEQUENCE,
  MODE_AUTH,
  MODE_BASE,
  MODE_PSK,
  deriveKeyPair,
  generateKeyPair,
  isSupportedSuite,
  keyScheduleContextForTesting,
  keyScheduleValuesForTesting,
  setSequenceForTesting,
  setupAuthPSKR,
  setupAuthPSKS,
  setupAuthR,
  setupAuthS,
  setupBaseR,
  setupBaseS,
  setupPSKR,
  setupPSKS,
  type SenderSetup,
  type SuiteIds,
} from './hpke.ts';
import { nodeBackend } from './node/backend-node.ts';

interface Vector {
  mode: number | string;
  kem_id: number | string;
  kdf_id: number | string;
  aead_id: number | string;
  info: string;
  ikmE: string;
  pkEm: string;
  ikmR: string;
  pkRm: string;
  ikmS?: string;
  pkSm?: string;
  psk?: string;
  psk_id?: string;
  enc: string;
  shared_secret: string;
  key_schedule_context: string;
  secret: string;
  key: string;
  base_nonce: string;
  exporter_secret: string;
  encryptions: { sequence_number: number; pt: string; aad: string; nonce: string; ct: string }[];
  exports: { exporter_context: string; L: number; exported_value: string }[];
}

const backends: CryptoBackend[] = [webCryptoBackend, nodeBackend];
const te = new TextEncoder();

/** Suites RFC 9180 Appendix A covers that this module deliberately does not implement. */
const KNOWN_UNSUPPORTED = new Set(['16/1/1', '16/3/1', '16/1/3', '18/3/2']);

describe.skipIf(!hasVectors)('RFC 9180 Appendix A vectors', () => {
  const vectors: Vector[] = hasVectors ? JSON.parse(vectorText('protocol/hpke/rfc9180-appendixA-vectors.json')) : [];
  const suiteOf = (v: Vector): SuiteIds => ({ kemId: Number(v.kem_id), kdfId: Number(v.kdf_id), aeadId: Number(v.aead_id) });

  it('every vector is of a known kind: supported, or enumerated as unsupported', () => {
    expect(vectors.length).toBe(28);
    for (const v of vectors) {
      const s = suiteOf(v);
      const id = `${s.kemId}/${s.kdfId}/${s.aeadId}`;
      expect(['0', '1', '2', '3']).toContain(String(v.mode));
      if (isSupportedSuite(s)) expect(KNOWN_UNSUPPORTED.has(id)).toBe(false);
      else expect(KNOWN_UNSUPPORTED.has(id), `unknown vector suite ${id}`).toBe(true);
    }
    // X25519 with AES-128-GCM, ChaCha20-Poly1305 and export-only, in all four modes: 12 runnable vectors.
    expect(vectors.filter((v) => isSupportedSuite(suiteOf(v))).length).toBe(12);
  });

  it('unsupported suites (P-256, P-521 KEMs) are refused with HPKE_UNSUPPORTED_SUITE', async () => {
    const kp = await generateKeyPair();
    for (const v of vectors.filter((x) => !isSupportedSuite(suiteOf(x)))) {
      await expect(setupBaseS(suiteOf(v), kp.publicKey, new Uint8Array())).rejects.toMatchObject({ code: 'HPKE_UNSUPPORTED_SUITE' });
    }
  });

  for (const backend of backends) {
    it(`reproduces every supported vector: key schedule, ciphertexts, exports (${backend.name})`, async () => {
      let ran = 0;
      for (const v of vectors) {
        const suite = suiteOf(v);
        if (!isSupportedSuite(suite)) continue;
        const eph = await deriveKeyPair(fromHex(v.ikmE), backend);
        const r = await deriveKeyPair(fromHex(v.ikmR), backend);
        const s = v.ikmS ? await deriveKeyPair(fromHex(v.ikmS), backend) : undefined;
        expect(hex(eph.publicKey)).toBe(v.pkEm);
        expect(hex(r.publicKey)).toBe(v.pkRm);
        if (s) expect(hex(s.publicKey)).toBe(v.pkSm);
        const info = fromHex(v.info);
        const psk = fromHex(v.psk ?? '');
        const pskId = fromHex(v.psk_id ?? '');
        const o = { backend, ephemeralKeyPair: eph };
        let sender: SenderSetup;
        let receiver;
        switch (String(v.mode)) {
          case '0':
            sender = await setupBaseS(suite, r.publicKey, info, o);
            receiver = await setupBaseR(suite, sender.enc, r, info, { backend });
            break;
          case '1':
            sender = await setupPSKS(suite, r.publicKey, info, psk, pskId, o);
            receiver = await setupPSKR(suite, sender.enc, r, info, psk, pskId, { backend });
            break;
          case '2':
            sender = await setupAuthS(suite, r.publicKey, info, s!, o);
            receiver = await setupAuthR(suite, sender.enc, r, info, s!.publicKey, { backend });
            break;
          case '3':
            sender = await setupAuthPSKS(suite, r.publicKey, info, psk, pskId, s!, o);
            receiver = await setupAuthPSKR(suite, sender.enc, r, info, psk, pskId, s!.publicKey, { backend });
            break;
          default:
            throw new Error(`unknown mode ${v.mode}`);
        }
        expect(hex(sender.enc)).toBe(v.enc);
        for (const ctx of [sender.context, receiver]) {
          const k = keyScheduleValuesForTesting(ctx);
          expect(hex(k.sharedSecret)).toBe(v.shared_secret);
          expect(hex(k.keyScheduleContext)).toBe(v.key_schedule_context);
          expect(hex(k.secret)).toBe(v.secret);
          expect(hex(k.key)).toBe(v.key);
          expect(hex(k.baseNonce)).toBe(v.base_nonce);
          expect(hex(k.exporterSecret)).toBe(v.exporter_secret);
        }
        if (suite.aeadId === AEAD_EXPORT_ONLY) expect(v.encryptions).toHaveLength(0);
        for (const e of v.encryptions) {
          setSequenceForTesting(sender.context, e.sequence_number);
          setSequenceForTesting(receiver, e.sequence_number);
          expect(hex(await sender.context.seal(fromHex(e.aad), fromHex(e.pt)))).toBe(e.ct);
          expect(hex(await receiver.open(fromHex(e.aad), fromHex(e.ct)))).toBe(e.pt);
        }
        expect(v.exports.length).toBeGreaterThan(0);
        for (const x of v.exports) {
          expect(hex(sender.context.export(fromHex(x.exporter_context), x.L))).toBe(x.exported_value);
          expect(hex(receiver.export(fromHex(x.exporter_context), x.L))).toBe(x.exported_value);
        }
        ran++;
      }
      expect(ran).toBe(12);
    });
  }
});

describe('HPKE contexts', () => {
  const suite = { kemId: KEM_X25519_HKDF_SHA256, kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM };

  it('open failures are one opaque code and do not advance the sequence', async () => {
    const r = await generateKeyPair();
    const { enc, context } = await setupBaseS(suite, r.publicKey, te.encode('i'));
    const rc = await setupBaseR(suite, enc, r, te.encode('i'));
    const ct = await context.seal(te.encode('a'), te.encode('hello'));
    const bad = ct.slice();
    bad[0]! ^= 1;
    await expect(rc.open(te.encode('a'), bad)).rejects.toMatchObject({ code: 'HPKE_OPEN_FAILED' });
    await expect(rc.open(te.encode('b'), ct)).rejects.toMatchObject({ code: 'HPKE_OPEN_FAILED' });
    expect(rc.seq).toBe(0);
    expect(new TextDecoder().decode(await rc.open(te.encode('a'), ct))).toBe('hello');
    // Replaying the same ciphertext fails: the sequence number moved on.
    await expect(rc.open(te.encode('a'), ct)).rejects.toMatchObject({ code: 'HPKE_OPEN_FAILED' });
  });

  it('overlapping seals never share a nonce', async () => {
    const r = await generateKeyPair();
    const { enc, context } = await setupBaseS(suite, r.publicKey, new Uint8Array());
    const rc = await setupBaseR(suite, enc, r, new Uint8Array());
    const pt = te.encode('same plaintext');
    const cts = await Promise.all([0, 1, 2, 3].map(() => context.seal(new Uint8Array(), pt)));
    expect(new Set(cts.map(hex)).size).toBe(4);
    for (const ct of cts) expect(hex(await rc.open(new Uint8Array(), ct))).toBe(hex(pt));
  });

  it('enforces the message limit', async () => {
    const r = await generateKeyPair();
    const { context } = await setupBaseS(suite, r.publicKey, new Uint8Array());
    setSequenceForTesting(context, MAX_SEQUENCE - 1);
    await context.seal(new Uint8Array(), new Uint8Array(1));
    await expect(context.seal(new Uint8Array(), new Uint8Array(1))).rejects.toMatchObject({ code: 'HPKE_MESSAGE_LIMIT' });
  });

  it('export-only contexts cannot seal; export length is bounded', async () => {
    const r = await generateKeyPair();
    const { context } = await setupBaseS({ ...suite, aeadId: AEAD_EXPORT_ONLY }, r.publicKey, new Uint8Array());
    await expect(context.seal(new Uint8Array(), new Uint8Array(1))).rejects.toMatchObject({ code: 'HPKE_EXPORT_ONLY' });
    expect(context.export(new Uint8Array(), 255 * 32)).toHaveLength(255 * 32);
    expect(() => context.export(new Uint8Array(), 255 * 32 + 1)).toThrow(expect.objectContaining({ code: 'HPKE_EXPORT_TOO_LONG' }));
  });

  it('checks PSK inputs (VerifyPSKInputs)', async () => {
    const r = await generateKeyPair();
    const psk = new Uint8Array(32).fill(7);
    await expect(setupPSKS(suite, r.publicKey, new Uint8Array(), psk, new Uint8Array())).rejects.toMatchObject({ code: 'HPKE_BAD_PSK' });
    await expect(setupPSKS(suite, r.publicKey, new Uint8Array(), new Uint8Array(), te.encode('id'))).rejects.toMatchObject({ code: 'HPKE_BAD_PSK' });
    await expect(setupPSKS(suite, r.publicKey, new Uint8Array(), psk.subarray(0, 16), te.encode('id'))).rejects.toMatchObject({ code: 'HPKE_BAD_PSK' });
  });

  it('rejects bad public keys and the all-zero shared secret', async () => {
    const r = await generateKeyPair();
    await expect(setupBaseS(suite, new Uint8Array(31), new Uint8Array())).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
    // u = 0 is a low-order point: X25519 gives the all-zero output (RFC 7748 §6.1).
    await expect(setupBaseS(suite, new Uint8Array(32), new Uint8Array())).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
    await expect(setupBaseR(suite, new Uint8Array(32), r, new Uint8Array())).rejects.toMatchObject({ code: 'HPKE_BAD_KEY' });
  });
});

describe('interoperability with @hpke/core', () => {
  const aeads = [
    { id: AEAD_AES_128_GCM, make: () => new Aes128Gcm() },
    { id: AEAD_AES_256_GCM, make: () => new Aes256Gcm() },
    { id: AEAD_CHACHA20_POLY1305, make: () => new Chacha20Poly1305() },
    { id: AEAD_EXPORT_ONLY, make: () => new ExportOnly() },
  ];
  const info = te.encode('gm interop');
  const aad = te.encode('aad');
  const pt = te.encode('a prompt that only the enclave may read');
  const psk = { id: te.encode('psk id'), key: new Uint8Array(32).fill(0x42) };

  for (const backend of backends) {
    for (const a of aeads) {
      const suite = { kemId: KEM_X25519_HKDF_SHA256, kdfId: KDF_HKDF_SHA256, aeadId: a.id };
      const label = `AEAD 0x${a.id.toString(16)} (${backend.name})`;

      it(`theirs seals, ours opens: base and psk, ${label}`, async () => {
        const theirs = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: a.make() });
        const ikm = crypto.getRandomValues(new Uint8Array(32));
        const rTheirs = await theirs.kem.deriveKeyPair(ikm);
        const rOurs = await deriveKeyPair(ikm, backend);
        expect(hex(new Uint8Array(await theirs.kem.serializePublicKey(rTheirs.publicKey)))).toBe(hex(rOurs.publicKey));
        for (const withPsk of [false, true]) {
          const sender = await theirs.createSenderContext({ recipientPublicKey: rTheirs.publicKey, info, ...(withPsk ? { psk } : {}) });
          const enc = new Uint8Array(sender.enc);
          const ours = withPsk
            ? await setupPSKR(suite, enc, rOurs, info, psk.key, psk.id, { backend })
            : await setupBaseR(suite, enc, rOurs, info, { backend });
          expect(hex(ours.export(te.encode('ctx'), 48))).toBe(hex(new Uint8Array(await sender.export(te.encode('ctx'), 48))));
          if (a.id === AEAD_EXPORT_ONLY) continue;
          for (let i = 0; i < 3; i++) {
            const ct = new Uint8Array(await sender.seal(pt, aad));
            expect(hex(await ours.open(aad, ct))).toBe(hex(pt));
          }
        }
      });

      it(`ours seals, theirs opens: base and auth, ${label}`, async () => {
        const theirs = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: a.make() });
        const rTheirs = await theirs.kem.generateKeyPair();
        const pkR = new Uint8Array(await theirs.kem.serializePublicKey(rTheirs.publicKey));
        const sOurs = await generateKeyPair(backend);
        for (const auth of [false, true]) {
          const { enc, context } = auth
            ? await setupAuthS(suite, pkR, info, sOurs, { backend })
            : await setupBaseS(suite, pkR, info, { backend });
          const recipient = await theirs.createRecipientContext({
            recipientKey: rTheirs,
            enc,
            info,
            ...(auth ? { senderPublicKey: await theirs.kem.deserializePublicKey(sOurs.publicKey) } : {}),
          });
          expect(hex(new Uint8Array(await recipient.export(te.encode('ctx'), 32)))).toBe(hex(context.export(te.encode('ctx'), 32)));
          if (a.id === AEAD_EXPORT_ONLY) continue;
          for (let i = 0; i < 3; i++) {
            const ct = await context.seal(aad, pt);
            expect(hex(new Uint8Array(await recipient.open(ct, aad)))).toBe(hex(pt));
          }
        }
      });
    }
  }
});

describe('memoized key_schedule_context', () => {
  /** LabeledExtract("", label, ikm) of RFC 9180 §4 with @noble/hashes, apart from the module's own derivations. */
  const labeledExtract = (suiteId: Uint8Array, label: string, ikm: Uint8Array) =>
    hmac(sha256, new Uint8Array(0), new Uint8Array([...te.encode('HPKE-v1'), ...suiteId, ...te.encode(label), ...ikm]));
  const suiteIdOf = (s: SuiteIds) => Uint8Array.of(...te.encode('HPKE'), s.kemId >> 8, s.kemId & 0xff, s.kdfId >> 8, s.kdfId & 0xff, s.aeadId >> 8, s.aeadId & 0xff);
  const suites: SuiteIds[] = [
    { kemId: KEM_X25519_HKDF_SHA256, kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM },
    { kemId: KEM_X25519_HKDF_SHA256, kdfId: KDF_HKDF_SHA256, aeadId: AEAD_CHACHA20_POLY1305 },
    { kemId: KEM_MLKEM768_X25519, kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM },
  ];
  const infos = [new Uint8Array(0), te.encode('message/bhttp request\0\x01\x64\x7a\x00\x01\x00\x01'), new Uint8Array(256).fill(7), new Uint8Array(257).fill(7)];

  for (const backend of backends) {
    it(`served from the memo, it equals RFC 9180 §5.1 computed apart, per mode, suite and info (${backend.name})`, () => {
      const seen = new Set<string>();
      for (const suite of suites) {
        for (const mode of [MODE_BASE, MODE_AUTH] as const) {
          for (const info of infos) {
            const want = hex(Uint8Array.of(mode, ...labeledExtract(suiteIdOf(suite), 'psk_id_hash', new Uint8Array(0)), ...labeledExtract(suiteIdOf(suite), 'info_hash', info)));
            for (let i = 0; i < 3; i++) {
              const { cached, computed } = keyScheduleContextForTesting(suite, mode, info, new Uint8Array(0), backend);
              expect(hex(cached)).toBe(want);
              expect(hex(computed)).toBe(want);
            }
            seen.add(want);
          }
        }
      }
      // Mode, suite and info each change the context: no entry is served for another key.
      expect(seen.size).toBe(suites.length * 2 * infos.length);
    });
  }

  it('a psk_id is never memoized: each one gives its own context', () => {
    const suite = suites[0]!;
    const info = infos[1]!;
    const a = keyScheduleContextForTesting(suite, MODE_PSK, info, te.encode('id-a'));
    const b = keyScheduleContextForTesting(suite, MODE_PSK, info, te.encode('id-b'));
    expect(hex(a.cached)).toBe(hex(a.computed));
    expect(hex(b.cached)).toBe(hex(b.computed));
    expect(hex(a.cached)).not.toBe(hex(b.cached));
    expect(hex(a.cached)).toBe(hex(Uint8Array.of(MODE_PSK, ...labeledExtract(suiteIdOf(suite), 'psk_id_hash', te.encode('id-a')), ...labeledExtract(suiteIdOf(suite), 'info_hash', info))));
  });

  it('a sealed message with headroom is the same ciphertext behind that many zero bytes', async () => {
    const suite = suites[0]!;
    const r = await generateKeyPair(nodeBackend);
    const eph = await generateKeyPair(nodeBackend);
    const a = await setupBaseS(suite, r.publicKey, infos[1]!, { backend: nodeBackend, ephemeralKeyPair: eph });
    const b = await setupBaseS(suite, r.publicKey, infos[1]!, { backend: nodeBackend, ephemeralKeyPair: eph });
    const pt = te.encode('headroom');
    const plain = await a.context.seal(new Uint8Array(0), pt);
    const roomy = await b.context.seal(new Uint8Array(0), pt, 9);
    expect(hex(roomy)).toBe('00'.repeat(9) + hex(plain));
  });
});
