/**
 * Encap made ahead of its message (hpke.ts `prepareEncap`, RFC 9180 §5.1.1): a request or a chunked request sealed
 * with it opens at the gateway like any other and carries the prepared `enc`; it is taken once, only for the KEM and
 * key it was made for, only in base or PSK mode; discarding it zeroes its secret; and the client SDK's slot hands each
 * request a different one (every request keeps its own ephemeral key).
 */
import { describe, expect, it } from 'vitest';
import { takePrepared } from '../client/encap.ts';
import { type CryptoBackend, webCryptoBackend } from './backend.ts';
import { decapsulateChunkedRequest, encapsulateChunkedRequest } from './chunked.ts';
import { KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256, PreparedEncap, prepareEncap, setupAuthS, setupBaseR, setupBaseS, setupPSKS } from './hpke.ts';
import { nodeBackend } from './node/backend-node.ts';
import { decapsulateRequest, encapsulateRequest, generateKeyConfig, selectSuite } from './ohttp.ts';

const te = new TextEncoder();
const td = new TextDecoder();
const backends: CryptoBackend[] = [nodeBackend, webCryptoBackend];
const kems = [KEM_X25519_HKDF_SHA256, KEM_MLKEM768_X25519];

describe('prepared Encap', () => {
  for (const backend of backends)
    for (const kemId of kems) {
      it(`seals a request and a chunked request that the gateway opens (KEM 0x${kemId.toString(16)}, ${backend.name})`, async () => {
        const g = await generateKeyConfig(3, undefined, { kemId, backend });
        const suite = selectSuite(g.config);
        const p = await prepareEncap(suite, g.config.publicKey, { backend });
        const { encapsulated, context } = await encapsulateRequest(g.config, te.encode('question'), { backend, prepared: p });
        expect(p.used).toBe(true);
        // hdr (7 bytes) || enc || ct: the enc on the wire is the one made ahead.
        expect(Buffer.from(encapsulated.subarray(7, 7 + p.enc.length)).equals(Buffer.from(p.enc))).toBe(true);
        const d = await decapsulateRequest([g], encapsulated, { backend });
        expect(td.decode(d.request)).toBe('question');
        expect(td.decode(await context.openResponse(await d.context.sealResponse(te.encode('answer'))))).toBe('answer');

        const q = await prepareEncap(suite, g.config.publicKey, { backend });
        const sender = await encapsulateChunkedRequest(g.config, { backend, prepared: q });
        const wire = await sender.sealChunk(te.encode('streamed question'), { final: true });
        const opener = decapsulateChunkedRequest([g], { backend });
        const parts = [...(await opener.push(wire)), ...(await opener.end())];
        expect(parts.map((x) => td.decode(x)).join('')).toBe('streamed question');
        expect(Buffer.from(opener.enc!).equals(Buffer.from(q.enc))).toBe(true);
      });
    }

  it('is taken once', async () => {
    const g = await generateKeyConfig(1, undefined, { kemId: KEM_MLKEM768_X25519 });
    const p = await prepareEncap(selectSuite(g.config), g.config.publicKey);
    await encapsulateRequest(g.config, te.encode('a'), { prepared: p });
    await expect(encapsulateRequest(g.config, te.encode('b'), { prepared: p })).rejects.toMatchObject({ code: 'HPKE_PREPARED_USED' });
  });

  it('serves only the KEM and recipient key it was made for, and is not spent by a refusal', async () => {
    const a = await generateKeyConfig(1, undefined, { kemId: KEM_MLKEM768_X25519 });
    const b = await generateKeyConfig(2, undefined, { kemId: KEM_MLKEM768_X25519 });
    const x = await generateKeyConfig(3, undefined, { kemId: KEM_X25519_HKDF_SHA256 });
    const p = await prepareEncap(selectSuite(a.config), a.config.publicKey);
    await expect(encapsulateRequest(b.config, te.encode('q'), { prepared: p })).rejects.toMatchObject({ code: 'HPKE_PREPARED_MISMATCH' });
    await expect(encapsulateRequest(x.config, te.encode('q'), { prepared: p })).rejects.toMatchObject({ code: 'HPKE_PREPARED_MISMATCH' });
    expect(p.used).toBe(false);
    const { encapsulated } = await encapsulateRequest(a.config, te.encode('q'), { prepared: p });
    expect(td.decode((await decapsulateRequest([a], encapsulated)).request)).toBe('q');
  });

  it('serves base and PSK modes, never Auth modes or test keys', async () => {
    const g = await generateKeyConfig(1, undefined, { kemId: KEM_X25519_HKDF_SHA256 });
    const suite = { ...selectSuite(g.config) };
    const info = te.encode('info');
    const psk = new Uint8Array(32).fill(7);
    const pskId = te.encode('id');
    const p = await prepareEncap(suite, g.config.publicKey);
    const s = await setupPSKS(suite, g.config.publicKey, info, psk, pskId, { prepared: p });
    expect(s.enc).toBe(p.enc);
    const sender = await generateKeyConfig(2, undefined, { kemId: KEM_X25519_HKDF_SHA256 });
    const q = await prepareEncap(suite, g.config.publicKey);
    await expect(setupAuthS(suite, g.config.publicKey, info, sender.privateKey, { prepared: q })).rejects.toMatchObject({ code: 'HPKE_PREPARED_MISMATCH' });
    await expect(setupBaseS(suite, g.config.publicKey, info, { prepared: q, ephemeralKeyPair: sender.privateKey })).rejects.toMatchObject({ code: 'HPKE_PREPARED_MISMATCH' });
    expect(q.used).toBe(false);
    // The base-mode context it gives is the recipient's: what one seals, the other opens.
    const base = await setupBaseS(suite, g.config.publicKey, info, { prepared: q });
    const r = await setupBaseR(suite, base.enc, g.privateKey, info);
    expect(td.decode(await r.open(new Uint8Array(0), await base.context.seal(new Uint8Array(0), te.encode('sealed'))))).toBe('sealed');
  });

  it('discard() zeroes the secret and spends it', () => {
    const held = new Uint8Array(32).fill(9);
    const pk = new Uint8Array(32).fill(1);
    const q = new PreparedEncap(KEM_X25519_HKDF_SHA256, pk, new Uint8Array(32), held);
    q.discard();
    expect(q.used).toBe(true);
    expect(held.every((x) => x === 0)).toBe(true);
    expect(() => q.take(KEM_X25519_HKDF_SHA256, pk)).toThrow(expect.objectContaining({ code: 'HPKE_PREPARED_USED' }));
    const kept = new PreparedEncap(KEM_X25519_HKDF_SHA256, pk, new Uint8Array(32), new Uint8Array(32).fill(9));
    expect(kept.take(KEM_X25519_HKDF_SHA256, pk).sharedSecret.every((x) => x === 9)).toBe(true);
  });

  it('the SDK slot: the first request finds none, each later one a different Encap made after the one before left', async () => {
    const g = await generateKeyConfig(1, undefined, { kemId: KEM_MLKEM768_X25519 });
    expect(await takePrepared(g.config)).toBeUndefined();
    await new Promise((r) => setTimeout(r, 5));
    const first = await takePrepared(g.config);
    await new Promise((r) => setTimeout(r, 5));
    const second = await takePrepared(g.config);
    expect(first).toBeDefined();
    expect(second).toBeDefined();
    expect(first!.pkR).toBe(g.config.publicKey);
    expect(Buffer.from(first!.enc).equals(Buffer.from(second!.enc))).toBe(false);
    const other = await generateKeyConfig(2, undefined, { kemId: KEM_MLKEM768_X25519 });
    expect(await takePrepared(other.config)).toBeUndefined(); // one slot per configuration
  });
});
