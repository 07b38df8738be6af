/**
 * Column protection for a ledger kept in a database the enclaves do not control (docs/design.md §6 "What the
 * database host sees"). Under one 32-byte ledger key, held in memory only:
 *   seal/open  AES-256-GCM (NIST SP 800-38D), a random 96-bit nonce per value, associated data
 *              "gm-ledger-column-v1" ‖ 0 ‖ table ‖ 0 ‖ row id ‖ 0 ‖ column, so a value moved to another row, column or
 *              table fails authentication; sealed = nonce(12) ‖ ciphertext ‖ tag(16).
 *   token      HMAC-SHA256 under a derived key of a kind ‖ 0 ‖ value: the equality lookups (an account by its API
 *              key hash, a worker's credit row) without the value.
 *   keyCheck   HMAC of a constant, stored in the database so a replica holding another key is refused.
 * The encryption and MAC keys are derived from the ledger key with HKDF-SHA256 (RFC 5869) under distinct labels.
 * Random nonces bound one key to about 2^32 sealed values (SP 800-38D §8.3); a ledger that nears it takes a new key.
 */
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import { configError, rejected } from '../../attestation/errors.ts';

const NONCE = 12;
const TAG = 16;
const AD_LABEL = 'gm-ledger-column-v1';

export class LedgerKey {
  readonly #enc: KeyObject;
  readonly #mac: KeyObject;
  readonly #check: Uint8Array;

  constructor(key: Uint8Array) {
    if (key.length !== 32) throw configError('LEDGER_KEY_INVALID', 'the ledger key must be 32 bytes');
    const derive = (label: string): Buffer => Buffer.from(hkdfSync('sha256', key, new Uint8Array(0), label, 32));
    this.#enc = createSecretKey(derive('gm-ledger-enc-v1'));
    this.#mac = createSecretKey(derive('gm-ledger-mac-v1'));
    this.#check = new Uint8Array(createHmac('sha256', createSecretKey(derive('gm-ledger-check-v1'))).update('gm-ledger-key-check-v1').digest());
  }

  /** What the database stores to tell this key from another (reveals nothing about the key beyond equality). */
  get keyCheck(): Uint8Array {
    return this.#check.slice();
  }

  matches(check: Uint8Array): boolean {
    return check.length === this.#check.length && timingSafeEqual(check, this.#check);
  }

  seal(table: string, rowId: string, column: string, plaintext: Uint8Array): Uint8Array {
    const nonce = randomBytes(NONCE);
    const c = createCipheriv('aes-256-gcm', this.#enc, nonce);
    c.setAAD(ad(table, rowId, column));
    const body = Buffer.concat([c.update(plaintext), c.final()]);
    return new Uint8Array(Buffer.concat([nonce, body, c.getAuthTag()]));
  }

  /** LEDGER_COLUMN_AUTH when the value was changed, moved or sealed under another key. */
  open(table: string, rowId: string, column: string, sealed: Uint8Array): Uint8Array {
    if (sealed.length < NONCE + TAG) throw rejected('LEDGER_COLUMN_AUTH', `${table}.${column} of row ${rowId} is too short to be sealed`);
    try {
      const d = createDecipheriv('aes-256-gcm', this.#enc, sealed.subarray(0, NONCE));
      d.setAAD(ad(table, rowId, column));
      d.setAuthTag(sealed.subarray(sealed.length - TAG));
      return new Uint8Array(Buffer.concat([d.update(sealed.subarray(NONCE, sealed.length - TAG)), d.final()]));
    } catch (e) {
      throw rejected('LEDGER_COLUMN_AUTH', `${table}.${column} of row ${rowId} does not authenticate under the ledger key`, { cause: e });
    }
  }

  sealJson(table: string, rowId: string, column: string, value: unknown): Uint8Array {
    return this.seal(table, rowId, column, new TextEncoder().encode(JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))));
  }

  openJson<T>(table: string, rowId: string, column: string, sealed: Uint8Array): T {
    const text = new TextDecoder().decode(this.open(table, rowId, column, sealed));
    return JSON.parse(text, (_k, v) => (typeof v === 'string' && /^-?\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v)) as T;
  }

  token(kind: string, value: string | Uint8Array): Uint8Array {
    return new Uint8Array(createHmac('sha256', this.#mac).update(kind).update('\0').update(value).digest());
  }
}

function ad(table: string, rowId: string, column: string): Buffer {
  return Buffer.from(`${AD_LABEL}\0${table}\0${rowId}\0${column}`);
}
