/**
 * Policy as data (after go-sev-guest `check.proto`): a JSON document converted to typed validate options.
 * Reading is strict: an unknown field, a wrong type or a wrong-length hex value is a configuration error, and a
 * field the schema marks required must be present. Each platform's policy module declares its schema with this.
 */
import { fromHex } from './bytes.ts';
import { configError } from './errors.ts';

type Json = unknown;

export class PolicyReader {
  readonly #obj: Record<string, Json>;
  readonly #seen = new Set<string>();
  readonly #where: string;

  constructor(doc: Json, where = 'policy') {
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw configError('POLICY_INVALID', `${where} must be a JSON object`);
    this.#obj = doc as Record<string, Json>;
    this.#where = where;
  }

  static parse(text: string, where = 'policy'): PolicyReader {
    try {
      return new PolicyReader(JSON.parse(text), where);
    } catch (e) {
      if (e instanceof SyntaxError) throw configError('POLICY_INVALID', `${where} is not valid JSON: ${e.message}`, { cause: e });
      throw e;
    }
  }

  #get(name: string, required: boolean): Json | undefined {
    this.#seen.add(name);
    const v = this.#obj[name];
    if (v === undefined && required) throw configError('POLICY_MISSING_FIELD', `${this.#where}: required field "${name}" is missing`);
    return v;
  }

  #bad(name: string, want: string): never {
    throw configError('POLICY_INVALID', `${this.#where}: field "${name}" must be ${want}`);
  }

  boolean(name: string): boolean;
  boolean(name: string, optional: 'optional'): boolean | undefined;
  boolean(name: string, optional?: 'optional'): boolean | undefined {
    const v = this.#get(name, !optional);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') this.#bad(name, 'a boolean');
    return v;
  }

  integer(name: string, min?: number, max?: number): number;
  integer(name: string, min: number | undefined, max: number | undefined, optional: 'optional'): number | undefined;
  integer(name: string, min = 0, max = Number.MAX_SAFE_INTEGER, optional?: 'optional'): number | undefined {
    const v = this.#get(name, !optional);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) this.#bad(name, `an integer in [${min}, ${max}]`);
    return v;
  }

  string(name: string): string;
  string(name: string, optional: 'optional'): string | undefined;
  string(name: string, optional?: 'optional'): string | undefined {
    const v = this.#get(name, !optional);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') this.#bad(name, 'a string');
    return v;
  }

  strings(name: string, allowed?: readonly string[]): string[];
  strings(name: string, allowed: readonly string[] | undefined, optional: 'optional'): string[] | undefined;
  strings(name: string, allowed?: readonly string[], optional?: 'optional'): string[] | undefined {
    const v = this.#get(name, !optional);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) this.#bad(name, 'an array of strings');
    if (allowed) for (const x of v as string[]) if (!allowed.includes(x)) this.#bad(name, `one of ${allowed.join(', ')} (got "${x}")`);
    return v as string[];
  }

  /** Hex of exactly `len` bytes. */
  hex(name: string, len: number): Uint8Array;
  hex(name: string, len: number, optional: 'optional'): Uint8Array | undefined;
  hex(name: string, len: number, optional?: 'optional'): Uint8Array | undefined {
    const v = this.#get(name, !optional);
    if (v === undefined) return undefined;
    return this.#hexValue(name, v, len);
  }

  /** An array of hex values, each exactly `len` bytes (an allowlist). */
  hexList(name: string, len: number): Uint8Array[];
  hexList(name: string, len: number, optional: 'optional'): Uint8Array[] | undefined;
  hexList(name: string, len: number, optional?: 'optional'): Uint8Array[] | undefined {
    const v = this.#get(name, !optional);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) this.#bad(name, `an array of ${len}-byte hex strings`);
    return (v as Json[]).map((x) => this.#hexValue(name, x, len));
  }

  object(name: string): PolicyReader;
  object(name: string, optional: 'optional'): PolicyReader | undefined;
  object(name: string, optional?: 'optional'): PolicyReader | undefined {
    const v = this.#get(name, !optional);
    if (v === undefined) return undefined;
    return new PolicyReader(v, `${this.#where}.${name}`);
  }

  /** Raw JSON value, for schemas that need their own conversion. */
  raw(name: string, optional?: 'optional'): Json | undefined {
    return this.#get(name, !optional);
  }

  #hexValue(name: string, v: Json, len: number): Uint8Array {
    if (typeof v !== 'string' || v.length !== 2 * len || !/^[0-9a-fA-F]*$/.test(v)) this.#bad(name, `${len}-byte hex (${2 * len} hex digits)`);
    return fromHex(v as string);
  }

  /** Call after reading every field: rejects fields the schema does not know (a typo must not skip a check). */
  done(): void {
    for (const k of Object.keys(this.#obj)) {
      if (k === '$comment') continue;
      if (!this.#seen.has(k)) throw configError('POLICY_UNKNOWN_FIELD', `${this.#where}: unknown field "${k}"`);
    }
  }
}
