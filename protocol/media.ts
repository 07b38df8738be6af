/**
 * Media types of the gm wire protocol (docs/protocol.md §2).
 * RFC 9458 §9 (ohttp-keys, ohttp-req, ohttp-res), draft-ietf-ohai-chunked-ohttp-08 §7 (chunked), RFC 9292 §6 (bhttp),
 * RFC 9457 (problem details).
 */
/** A list of key configurations, each with a 2-byte length prefix (RFC 9458 §3.2). */
export const MEDIA_OHTTP_KEYS = 'application/ohttp-keys';
/** An encapsulated request (RFC 9458 §4.3). */
export const MEDIA_OHTTP_REQ = 'message/ohttp-req';
/** An encapsulated response (RFC 9458 §4.4). */
export const MEDIA_OHTTP_RES = 'message/ohttp-res';
/** A chunked encapsulated request (draft-ietf-ohai-chunked-ohttp-08 §4). */
export const MEDIA_OHTTP_CHUNKED_REQ = 'message/ohttp-chunked-req';
/** A chunked encapsulated response (draft-ietf-ohai-chunked-ohttp-08 §5). */
export const MEDIA_OHTTP_CHUNKED_RES = 'message/ohttp-chunked-res';
/** A binary HTTP message (RFC 9292 §6). */
export const MEDIA_BHTTP = 'message/bhttp';
/** Problem details (RFC 9457), used for every error response gm's gateways send. */
export const MEDIA_PROBLEM_JSON = 'application/problem+json';
/** RFC 9458 §6 / IANA HTTP problem type for a key configuration the gateway does not accept. */
export const PROBLEM_TYPE_OHTTP_KEY = 'https://iana.org/assignments/http-problem-types#ohttp-key';
/** HPKE `info` label of a request (RFC 9458 §4.3) and the exporter label of its response (§4.4). */
export const LABEL_REQUEST = 'message/bhttp request';
export const LABEL_RESPONSE = 'message/bhttp response';
/** Chunked variants (draft-ietf-ohai-chunked-ohttp-08 §6.1, §6.2). */
export const LABEL_CHUNKED_REQUEST = 'message/bhttp chunked request';
export const LABEL_CHUNKED_RESPONSE = 'message/bhttp chunked response';
