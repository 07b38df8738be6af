/**
 * OHTTP (RFC 9458) and chunked OHTTP (draft-ietf-ohai-chunked-ohttp-08) over the X-Wing KEM: key configurations of
 * 1216-byte keys, 1120-byte encapsulated keys in the request header, the response keys derived from the hybrid
 * shared secret through HPKE's Export as for X25519, and the client's KEM preference.
 */
import { describe, expect, it } from 'vitest';
import { webCryptoBackend, type CryptoBackend } from './backend.ts';
import { decapsulateChunkedRequest, encapsulateChunkedRequest, type ChunkOpener } from './chunked.ts';
import { KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256 } from './hpke.ts';
import { nodeBackend } from './node/backend-node.ts';
import {
  chooseKeyConfig,
  decapsulateRequest,
  decodeKeyConfig,
  decodeKeyConfigs,
  encapsulateRequest,
  encodeKeyConfig,
  encodeKeyConfigs,
  gatewayKeyFromPrivateKey,
  generateKeyConfig,
  isPostQuantumKem,
  type KeyConfig,
} from './ohttp.ts';
import { ReplayCache } from './replay.ts';

const te = new TextEncoder();
const td = new TextDecoder();
const backends: CryptoBackend[] = [webCryptoBackend, nodeBackend];

async function drain(o: ChunkOpener, wire: Uint8Array): Promise<string> {
  const out = [...(await o.push(wire.subarray(0, 100))), ...(await o.push(wire.subarray(100))), ...(await o.end())];
  return out.map((x) => td.decode(x)).join('');
}

describe('X-Wing key configurations', () => {
  it('encode and decode with their 1216-byte key; a truncated or padded one is refused', async () => {
    const g = await generateKeyConfig(9, undefined, { kemId: KEM_MLKEM768_X25519 });
    const bytes = encodeKeyConfig(g.config);
    expect(bytes.length).toBe(1 + 2 + 1216 + 2 + 8);
    expect(decodeKeyConfig(bytes)).toEqual(g.config);
    expect(() => decodeKeyConfig(bytes.subarray(0, bytes.length - 1))).toThrow(expect.objectContaining({ code: 'OHTTP_BAD_KEY_CONFIG' }));
    expect(() => decodeKeyConfig(Uint8Array.from([...bytes, 0]))).toThrow(expect.objectContaining({ code: 'OHTTP_BAD_KEY_CONFIG' }));
    expect(() => encodeKeyConfig({ ...g.config, publicKey: g.config.publicKey.subarray(0, 32) })).toThrow(expect.objectContaining({ code: 'OHTTP_BAD_KEY_CONFIG' }));
  });

  it('a list of both decodes in order; an X-Wing seed imports to the same configuration', async () => {
    const seed = crypto.getRandomValues(new Uint8Array(32));
    const a = await gatewayKeyFromPrivateKey(1, seed, undefined, { kemId: KEM_MLKEM768_X25519 });
    const b = await gatewayKeyFromPrivateKey(1, seed, undefined, { kemId: KEM_MLKEM768_X25519, backend: webCryptoBackend });
    expect(a.config.publicKey).toEqual(b.config.publicKey);
    const x = await generateKeyConfig(2);
    expect(decodeKeyConfigs(encodeKeyConfigs([a.config, x.config])).map((c) => c.kemId)).toEqual([KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256]);
  });
});

describe('chooseKeyConfig: X-Wing preferred, fallback only within the list', () => {
  const cfg = (keyId: number, kemId: number, aeadId = 0x0001): KeyConfig => ({ keyId, kemId, publicKey: new Uint8Array(kemId === KEM_MLKEM768_X25519 ? 1216 : 32), symmetric: [{ kdfId: 1, aeadId }] });

  it('picks X-Wing whatever its position, X25519 only when no usable X-Wing is listed', () => {
    expect(chooseKeyConfig([cfg(1, KEM_X25519_HKDF_SHA256), cfg(2, KEM_MLKEM768_X25519)]).keyId).toBe(2);
    expect(chooseKeyConfig([cfg(2, KEM_MLKEM768_X25519), cfg(1, KEM_X25519_HKDF_SHA256)]).keyId).toBe(2);
    expect(chooseKeyConfig([cfg(1, KEM_X25519_HKDF_SHA256)]).keyId).toBe(1);
    // An X-Wing configuration with no AEAD this client has is not usable: the X25519 one is.
    expect(chooseKeyConfig([cfg(2, KEM_MLKEM768_X25519, 0x7777), cfg(1, KEM_X25519_HKDF_SHA256)]).keyId).toBe(1);
    expect(() => chooseKeyConfig([cfg(2, KEM_MLKEM768_X25519, 0x7777)])).toThrow(expect.objectContaining({ code: 'OHTTP_UNSUPPORTED_SUITE' }));
    expect(() => chooseKeyConfig([])).toThrow(expect.objectContaining({ code: 'OHTTP_UNSUPPORTED_SUITE' }));
  });

  it('only X-Wing counts as post-quantum', () => {
    expect(isPostQuantumKem(KEM_MLKEM768_X25519)).toBe(true);
    expect(isPostQuantumKem(KEM_X25519_HKDF_SHA256)).toBe(false);
  });
});

for (const backend of backends) {
  describe(`OHTTP over X-Wing (${backend.name})`, () => {
    it('a request and its response round-trip; the header names 0x647A and enc is 1120 bytes', async () => {
      const g = await generateKeyConfig(3, undefined, { kemId: KEM_MLKEM768_X25519, backend });
      const { encapsulated, context } = await encapsulateRequest(g.config, te.encode('question'), { backend });
      expect([...encapsulated.subarray(0, 7)]).toEqual([3, 0x64, 0x7a, 0, 1, 0, 1]);
      expect(encapsulated.length).toBe(7 + 1120 + 'question'.length + 16);
      const replay = new ReplayCache({ maxEntries: 10, windowMs: 60_000 });
      const d = await decapsulateRequest([g], encapsulated, { backend, replay });
      expect(td.decode(d.request)).toBe('question');
      expect(td.decode(await context.openResponse(await d.context.sealResponse(te.encode('answer'))))).toBe('answer');
      await expect(decapsulateRequest([g], encapsulated, { backend, replay })).rejects.toMatchObject({ code: 'OHTTP_REPLAY' });
    });

    it('a request cut inside enc is OHTTP_MALFORMED; one sealed to the X25519 key of the same id is OHTTP_UNSUPPORTED_SUITE', async () => {
      const g = await generateKeyConfig(3, undefined, { kemId: KEM_MLKEM768_X25519, backend });
      const { encapsulated } = await encapsulateRequest(g.config, te.encode('q'), { backend });
      await expect(decapsulateRequest([g], encapsulated.subarray(0, 7 + 1119), { backend })).rejects.toMatchObject({ code: 'OHTTP_MALFORMED' });
      const x = await generateKeyConfig(3, undefined, { backend });
      const other = await encapsulateRequest(x.config, te.encode('q'), { backend });
      await expect(decapsulateRequest([g], other.encapsulated, { backend })).rejects.toMatchObject({ code: 'OHTTP_UNSUPPORTED_SUITE' });
    });

    it('chunked: the request and a streamed response of many chunks round-trip over the hybrid key schedule', async () => {
      const g = await generateKeyConfig(4, undefined, { kemId: KEM_MLKEM768_X25519, backend });
      const s = await encapsulateChunkedRequest(g.config, { backend });
      const wire = [await s.sealChunk(te.encode('hello ')), await s.sealChunk(te.encode('world'), { final: true })];
      expect([...wire[0]!.subarray(0, 3)]).toEqual([4, 0x64, 0x7a]);
      const gw = decapsulateChunkedRequest([g], { backend });
      expect(await drain(gw, Uint8Array.from(wire.flatMap((w) => [...w])))).toBe('hello world');
      expect(gw.suite?.kemId).toBe(KEM_MLKEM768_X25519);
      const rs = await gw.sealResponse();
      const parts = ['data: a\n\n', 'data: b\n\n', 'data: c\n\n'];
      const res: number[] = [];
      for (const p of parts) res.push(...(await rs.sealChunk(te.encode(p))));
      res.push(...(await rs.sealChunk(te.encode('data: [DONE]\n\n'), { final: true })));
      expect(await drain(s.openResponse(), Uint8Array.from(res))).toBe(parts.join('') + 'data: [DONE]\n\n');
    });
  });
}
