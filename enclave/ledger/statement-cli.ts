/** `gm receipts statement`: see admin-cli.ts. */
export { runStatement as run } from './admin-cli.ts';
