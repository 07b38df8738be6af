/**
 * Intel PCS collateral bodies as typed structures: TDX TCB Info v3 (PCS API v4 "TCB Info", `tcbInfo` with
 * id "TDX") and TD QE Identity v2 (`enclaveIdentity` with id "TD_QE"). Field names as Intel spells them.
 * Parsing only: the signature over the exact JSON text is checked in `collateral.ts`, the matching in `tcb.ts`.
 */
import { fromHex } from '../bytes.ts';
import { collateralError } from '../errors.ts';

export const TCB_STATUSES = [
  'UpToDate', 'SWHardeningNeeded', 'ConfigurationNeeded', 'ConfigurationAndSWHardeningNeeded', 'OutOfDate',
  'OutOfDateConfigurationNeeded', 'Revoked',
] as const;
export type TcbStatus = (typeof TCB_STATUSES)[number];
/** Verification results add Intel's TDX 1.5 "TD relaunch advised" outcomes to the TCB info statuses. */
export const TDX_TCB_RESULTS = [...TCB_STATUSES, 'TDRelaunchAdvised', 'TDRelaunchAdvisedConfigurationNeeded'] as const;
export type TdxTcbStatus = (typeof TDX_TCB_RESULTS)[number];

export interface TcbLevel {
  /** SGX TCB component SVNs 1..16. */
  readonly sgxTcbComponents: readonly number[];
  readonly pceSvn: number;
  /** TDX TCB component SVNs 1..16 (compared with TEE_TCB_SVN). */
  readonly tdxTcbComponents: readonly number[];
  readonly tcbDate: string;
  readonly tcbStatus: TcbStatus;
  readonly advisoryIds: readonly string[];
}

export interface IsvSvnLevel {
  readonly isvSvn: number;
  readonly tcbDate: string;
  readonly tcbStatus: TcbStatus;
  readonly advisoryIds: readonly string[];
}

export interface TdxModule {
  readonly mrSigner: Uint8Array;
  readonly attributes: Uint8Array;
  readonly attributesMask: Uint8Array;
}

export interface TdxModuleIdentity extends TdxModule {
  readonly id: string;
  readonly tcbLevels: readonly IsvSvnLevel[];
}

export interface TcbInfo {
  readonly id: 'TDX';
  readonly version: 3;
  readonly issueDate: Date;
  readonly nextUpdate: Date;
  readonly fmspc: Uint8Array;
  readonly pceId: Uint8Array;
  readonly tcbType: number;
  readonly tcbEvaluationDataNumber: number;
  readonly tdxModule: TdxModule;
  /** TDX 1.5 platforms: module identities by TDX module major version ("TDX_01", "TDX_03", …). */
  readonly tdxModuleIdentities: readonly TdxModuleIdentity[] | undefined;
  readonly tcbLevels: readonly TcbLevel[];
}

export interface QeIdentity {
  readonly id: 'TD_QE';
  readonly version: 2;
  readonly issueDate: Date;
  readonly nextUpdate: Date;
  readonly tcbEvaluationDataNumber: number;
  readonly miscSelect: number;
  readonly miscSelectMask: number;
  readonly attributes: Uint8Array;
  readonly attributesMask: Uint8Array;
  readonly mrSigner: Uint8Array;
  readonly isvProdId: number;
  readonly tcbLevels: readonly IsvSvnLevel[];
}

type Obj = Record<string, unknown>;

class JsonReader {
  readonly #o: Obj;
  readonly #where: string;
  readonly #code: string;
  constructor(v: unknown, where: string, code: string) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw collateralError(code, `${where} is not an object`);
    this.#o = v as Obj;
    this.#where = where;
    this.#code = code;
  }
  bad(field: string, want: string): never {
    throw collateralError(this.#code, `${this.#where}.${field} must be ${want}`);
  }
  has(f: string): boolean {
    return this.#o[f] !== undefined;
  }
  int(f: string, max = 0xffffffff): number {
    const v = this.#o[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) this.bad(f, `an integer in [0, ${max}]`);
    return v;
  }
  str(f: string): string {
    const v = this.#o[f];
    if (typeof v !== 'string') this.bad(f, 'a string');
    return v;
  }
  hex(f: string, len: number): Uint8Array {
    const v = this.str(f);
    if (v.length !== 2 * len || !/^[0-9a-fA-F]*$/.test(v)) this.bad(f, `${len}-byte hex`);
    return fromHex(v);
  }
  date(f: string): Date {
    const v = this.str(f);
    const d = new Date(v);
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(v) || Number.isNaN(d.getTime())) this.bad(f, 'an ISO-8601 UTC date');
    return d;
  }
  status(f: string): TcbStatus {
    const v = this.str(f);
    if (!(TCB_STATUSES as readonly string[]).includes(v)) this.bad(f, `one of ${TCB_STATUSES.join(', ')} (got "${v}")`);
    return v as TcbStatus;
  }
  strings(f: string): string[] {
    const v = this.#o[f];
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) this.bad(f, 'an array of strings');
    return v as string[];
  }
  obj(f: string): JsonReader {
    return new JsonReader(this.#o[f], `${this.#where}.${f}`, this.#code);
  }
  arr(f: string): JsonReader[] {
    const v = this.#o[f];
    if (!Array.isArray(v)) this.bad(f, 'an array');
    return (v as unknown[]).map((x, i) => new JsonReader(x, `${this.#where}.${f}[${i}]`, this.#code));
  }
}

function parseJson(text: string, code: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw collateralError(code, `${what} is not valid JSON`, { cause: e });
  }
}

function components(r: JsonReader, f: string): number[] {
  const list = r.arr(f);
  if (list.length !== 16) r.bad(f, 'an array of 16 components');
  return list.map((c) => c.int('svn', 255));
}

function isvSvnLevels(r: JsonReader): IsvSvnLevel[] {
  return r.arr('tcbLevels').map((l) => ({
    isvSvn: l.obj('tcb').int('isvsvn', 0xffff), tcbDate: l.str('tcbDate'), tcbStatus: l.status('tcbStatus'), advisoryIds: l.strings('advisoryIDs'),
  }));
}

function tdxModule(r: JsonReader): TdxModule {
  return { mrSigner: r.hex('mrsigner', 48), attributes: r.hex('attributes', 8), attributesMask: r.hex('attributesMask', 8) };
}

/** Parses the text of the `tcbInfo` value (TDX, version 3). */
export function parseTcbInfo(text: string): TcbInfo {
  const code = 'TDX_TCB_INFO_INVALID';
  const r = new JsonReader(parseJson(text, code, 'TCB info'), 'tcbInfo', code);
  if (r.str('id') !== 'TDX') r.bad('id', '"TDX"');
  if (r.int('version') !== 3) r.bad('version', '3');
  const tcbLevels = r.arr('tcbLevels').map((l): TcbLevel => {
    const t = l.obj('tcb');
    return {
      sgxTcbComponents: components(t, 'sgxtcbcomponents'), pceSvn: t.int('pcesvn', 0xffff), tdxTcbComponents: components(t, 'tdxtcbcomponents'),
      tcbDate: l.str('tcbDate'), tcbStatus: l.status('tcbStatus'), advisoryIds: l.strings('advisoryIDs'),
    };
  });
  if (tcbLevels.length === 0) r.bad('tcbLevels', 'non-empty');
  // tcbType 0 is the only defined TCB type (components compared as SVN bytes, PCS "TCB Info" §tcbType).
  if (r.int('tcbType') !== 0) r.bad('tcbType', '0');
  return {
    id: 'TDX', version: 3, issueDate: r.date('issueDate'), nextUpdate: r.date('nextUpdate'), fmspc: r.hex('fmspc', 6), pceId: r.hex('pceId', 2),
    tcbType: r.int('tcbType'), tcbEvaluationDataNumber: r.int('tcbEvaluationDataNumber'), tdxModule: tdxModule(r.obj('tdxModule')),
    tdxModuleIdentities: r.has('tdxModuleIdentities')
      ? r.arr('tdxModuleIdentities').map((m) => ({ id: m.str('id'), ...tdxModule(m), tcbLevels: isvSvnLevels(m) }))
      : undefined,
    tcbLevels,
  };
}

/** Parses the text of the `enclaveIdentity` value (TD_QE, version 2). */
export function parseQeIdentity(text: string): QeIdentity {
  const code = 'TDX_QE_IDENTITY_INVALID';
  const r = new JsonReader(parseJson(text, code, 'QE identity'), 'enclaveIdentity', code);
  if (r.str('id') !== 'TD_QE') r.bad('id', '"TD_QE"');
  if (r.int('version') !== 2) r.bad('version', '2');
  const u32 = (f: string) => new DataView(r.hex(f, 4).buffer).getUint32(0, true);
  return {
    id: 'TD_QE', version: 2, issueDate: r.date('issueDate'), nextUpdate: r.date('nextUpdate'), tcbEvaluationDataNumber: r.int('tcbEvaluationDataNumber'),
    miscSelect: u32('miscselect'), miscSelectMask: u32('miscselectMask'), attributes: r.hex('attributes', 16), attributesMask: r.hex('attributesMask', 16),
    mrSigner: r.hex('mrsigner', 32), isvProdId: r.int('isvprodid', 0xffff), tcbLevels: isvSvnLevels(r),
  };
}
