/** `gm receipts account`: see admin-cli.ts. */
export { runAccount as run } from './admin-cli.ts';
