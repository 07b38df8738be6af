import { describe, expect, it } from 'vitest';
import { fromHex, hex } from '../attestation/bytes.ts';
import { hasVectors, vectorText } from '../test/vectors.ts';
import { AEAD_AES_128_GCM, AEAD_AES_256_GCM, AEAD_CHACHA20_POLY1305, AEAD_EXPORT_ONLY, KDF_HKDF_SHA256, importPrivateKey } from './hpke.ts';
import { nodeBackend } from './node/backend-node.ts';
import {
  decapsulateRequest,
  decodeKeyConfig,
  decodeKeyConfigs,
  encapsulateRequest,
  encodeKeyConfig,
  encodeKeyConfigs,
  gatewayKeyFromPrivateKey,
  generateKeyConfig,
} from './ohttp.ts';
import { ReplayCache } from './replay.ts';

const te = new TextEncoder();

describe.skipIf(!hasVectors)('RFC 9458 Appendix A', () => {
  const v = hasVectors ? JSON.parse(vectorText('protocol/ohttp/rfc9458-appendixA.json')) : {};
  const symmetric = [
    { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM },
    { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_CHACHA20_POLY1305 },
  ];

  for (const backend of [undefined, nodeBackend]) {
    it(`reproduces the key configuration, request and response byte for byte (${backend?.name ?? 'default'})`, async () => {
      const o = backend ? { backend } : {};
      const gk = await gatewayKeyFromPrivateKey(v.key_id, fromHex(v.server_skR), symmetric, o);
      expect(hex(encodeKeyConfig(gk.config))).toBe(v.key_config);
      const config = decodeKeyConfig(fromHex(v.key_config));
      const eph = await importPrivateKey(fromHex(v.client_skE), backend);
      expect(hex(eph.publicKey)).toBe(v.client_pkE_enc);
      const { encapsulated, context } = await encapsulateRequest(config, fromHex(v.request_bhttp), { ...o, ephemeralKeyPair: eph });
      expect(hex(encapsulated)).toBe(v.encapsulated_request);
      const d = await decapsulateRequest([gk], encapsulated, o);
      expect(hex(d.request)).toBe(v.request_bhttp);
      expect(hex(d.context.hpke.export(te.encode(v.export_context), 16))).toBe(v.exported_secret);
      const res = await d.context.sealResponse(fromHex(v.response_bhttp), { responseNonce: fromHex(v.response_nonce) });
      expect(hex(res)).toBe(v.encapsulated_response);
      expect(hex(await context.openResponse(res))).toBe(v.response_bhttp);
    });
  }
});

describe('key configurations', () => {
  it('round-trip single and list encodings, skipping unknown KEMs in a list', async () => {
    const a = (await generateKeyConfig(1)).config;
    const b = (await generateKeyConfig(2, [{ kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_256_GCM }])).config;
    const list = encodeKeyConfigs([a, b]);
    expect(decodeKeyConfigs(list).map(encodeKeyConfig).map(hex)).toEqual([a, b].map(encodeKeyConfig).map(hex));
    // An entry with KEM 0x0010 (P-256, 65-byte key): skipped by the list decoder, refused by the single decoder.
    const p256 = new Uint8Array([0x05, 0x00, 0x10, ...new Uint8Array(65), 0x00, 0x04, 0x00, 0x01, 0x00, 0x01]);
    const withUnknown = new Uint8Array([0, p256.length, ...p256, ...list]);
    expect(decodeKeyConfigs(withUnknown)).toHaveLength(2);
    expect(() => decodeKeyConfig(p256)).toThrow(expect.objectContaining({ code: 'OHTTP_UNSUPPORTED_KEM' }));
  });

  it('rejects malformed configurations', () => {
    const good = encodeKeyConfig({ keyId: 7, kemId: 0x20, publicKey: new Uint8Array(32).fill(9), symmetric: [{ kdfId: 1, aeadId: 1 }] });
    const bad = (b: Uint8Array) => expect(() => decodeKeyConfig(b)).toThrow(expect.objectContaining({ code: 'OHTTP_BAD_KEY_CONFIG' }));
    bad(good.subarray(0, good.length - 1)); // truncated
    bad(new Uint8Array([...good, 0])); // trailing byte
    const odd = good.slice();
    odd[36] = 3; // symmetric length not a multiple of 4
    bad(odd);
    const zero = good.slice(0, 37);
    zero[36] = 0;
    bad(zero);
    expect(() => decodeKeyConfigs(new Uint8Array([0, 5, 1, 2]))).toThrow(expect.objectContaining({ code: 'OHTTP_BAD_KEY_CONFIG' }));
    expect(() => decodeKeyConfigs(new Uint8Array())).toThrow(expect.objectContaining({ code: 'OHTTP_BAD_KEY_CONFIG' }));
  });
});

describe('request and response encapsulation', () => {
  it('round-trips with every offered AEAD and both backends', async () => {
    for (const backend of [undefined, nodeBackend]) {
      const o = backend ? { backend } : {};
      const gk = await generateKeyConfig(3, [
        { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM },
        { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_256_GCM },
        { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_CHACHA20_POLY1305 },
      ], o);
      for (const s of gk.config.symmetric) {
        const { encapsulated, context } = await encapsulateRequest(gk.config, te.encode('request'), { ...o, suite: s });
        const d = await decapsulateRequest([gk], encapsulated, o);
        expect(new TextDecoder().decode(d.request)).toBe('request');
        expect(d.context.suite.aeadId).toBe(s.aeadId);
        const r = await d.context.sealResponse(te.encode('response'));
        expect(new TextDecoder().decode(await context.openResponse(r))).toBe('response');
      }
    }
  });

  it('an unknown key id and an unoffered suite have their own codes (the client re-attests)', async () => {
    const gk = await generateKeyConfig(1);
    const other = await generateKeyConfig(2);
    const { encapsulated } = await encapsulateRequest(other.config, te.encode('x'));
    await expect(decapsulateRequest([gk], encapsulated)).rejects.toMatchObject({ code: 'OHTTP_UNKNOWN_KEY_ID' });
    const { encapsulated: e2 } = await encapsulateRequest(gk.config, te.encode('x'));
    const wrongAead = e2.slice();
    wrongAead[6] = AEAD_AES_256_GCM; // not in the key configuration
    await expect(decapsulateRequest([gk], wrongAead)).rejects.toMatchObject({ code: 'OHTTP_UNSUPPORTED_SUITE' });
    const exportOnly = await generateKeyConfig(4, [{ kdfId: KDF_HKDF_SHA256, aeadId: AEAD_EXPORT_ONLY }]);
    await expect(encapsulateRequest(exportOnly.config, te.encode('x'))).rejects.toMatchObject({ code: 'OHTTP_UNSUPPORTED_SUITE' });
  });

  it('every decryption failure is the one opaque code', async () => {
    const gk = await generateKeyConfig(1);
    const { encapsulated, context } = await encapsulateRequest(gk.config, te.encode('secret prompt'));
    for (const i of [7, 20, 39, encapsulated.length - 1]) {
      const t = encapsulated.slice();
      t[i]! ^= 0x80;
      const err = await decapsulateRequest([gk], t).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'OHTTP_DECRYPT_FAILED' });
      expect(String((err as Error).message)).not.toContain('secret');
    }
    await expect(decapsulateRequest([gk], encapsulated.subarray(0, 40))).rejects.toMatchObject({ code: 'OHTTP_DECRYPT_FAILED' });
    await expect(decapsulateRequest([gk], encapsulated.subarray(0, 20))).rejects.toMatchObject({ code: 'OHTTP_MALFORMED' });
    const d = await decapsulateRequest([gk], encapsulated);
    const r = await d.context.sealResponse(te.encode('answer'));
    const t = r.slice();
    t[t.length - 1]! ^= 1;
    await expect(context.openResponse(t)).rejects.toMatchObject({ code: 'OHTTP_DECRYPT_FAILED' });
    await expect(context.openResponse(r)).rejects.toMatchObject({ code: 'OHTTP_CONTEXT_USED' });
    await expect(d.context.sealResponse(te.encode('again'))).rejects.toMatchObject({ code: 'OHTTP_CONTEXT_USED' });
  });

  it('the same encapsulated request is accepted once', async () => {
    const gk = await generateKeyConfig(1);
    const replay = new ReplayCache({ maxEntries: 100, windowMs: 60_000 });
    const { encapsulated } = await encapsulateRequest(gk.config, te.encode('pay 5'));
    await decapsulateRequest([gk], encapsulated, { replay });
    await expect(decapsulateRequest([gk], encapsulated, { replay })).rejects.toMatchObject({ code: 'OHTTP_REPLAY' });
    // A forged request with a fresh enc that does not authenticate does not enter the cache.
    const forged = encapsulated.slice();
    forged[10]! ^= 1;
    await expect(decapsulateRequest([gk], forged, { replay })).rejects.toMatchObject({ code: 'OHTTP_DECRYPT_FAILED' });
    expect(replay.size).toBe(1);
  });
});
