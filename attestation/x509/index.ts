/** X.509 for attestation chains: strict DER, certificates, CRLs, pinned-algorithm signature verification. */
export * from './der.ts';
export * from './pem.ts';
export * from './cert.ts';
export * from './signature.ts';
export * from './chain.ts';
export * from './crl.ts';
