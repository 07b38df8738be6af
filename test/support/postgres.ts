/**
 * A private, real PostgreSQL server for one test file: initdb in a temporary directory, listening only on a Unix
 * socket in that directory (listen_addresses=''), stopped by `stop()` (call it in afterAll). With GM_PG_URL set,
 * that server is used instead (each test still gets its own database). Binaries come from `pg_config --bindir` or
 * /usr/lib/postgresql/<version>/bin. Without them `startPostgres` returns undefined (the caller skips), unless
 * GM_REQUIRE_POSTGRES=1, when it throws: CI must not pass by skipping.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface PgServer {
  /** A URL of the server's maintenance database. */
  readonly url: string;
  /** Creates an empty database and returns its URL. */
  database(name: string): Promise<string>;
  /**
   * Plain-SQL pg_dump of a database, without the `\restrict KEY` / `\unrestrict KEY` lines recent pg_dump releases
   * add: KEY is random per dump (it guards psql against meta-commands), not data, and can spell anything.
   */
  dump(url: string): string;
  /** Stops the server (fast shutdown) and starts it again on the same directory. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server for good and removes its directory. */
  close(): Promise<void>;
}

export function postgresBinDir(): string | undefined {
  try {
    const dir = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (existsSync(join(dir, 'initdb'))) return dir;
  } catch {
    // no pg_config on PATH: look where Debian installs the server
  }
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

/** initdb and postgres refuse to run as root: as root, run them as the `postgres` user the Debian package creates. */
function asServerUser(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const line = execFileSync('getent', ['passwd', 'postgres'], { encoding: 'utf8' }).trim().split(':');
  return { uid: Number(line[2]), gid: Number(line[3]) };
}

export async function startPostgres(): Promise<PgServer | undefined> {
  const external = process.env.GM_PG_URL;
  const bin = postgresBinDir();
  if (external) return externalServer(external, bin);
  if (!bin) {
    if (process.env.GM_REQUIRE_POSTGRES === '1') throw new Error('GM_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries were found (pg_config --bindir, /usr/lib/postgresql/*/bin)');
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'gm-pg-'));
  const data = join(dir, 'data');
  const user = asServerUser();
  if (user) chownSync(dir, user.uid, user.gid);
  const run = (cmd: string, args: string[]) => execFileSync(join(bin, cmd), args, { stdio: ['ignore', 'ignore', 'pipe'], ...(user ? { uid: user.uid, gid: user.gid } : {}) });
  run('initdb', ['-D', data, '-U', 'gm', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
  const url = `postgres://gm@localhost/postgres?host=${encodeURIComponent(dir)}`;
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const p = spawn(join(bin, 'postgres'), ['-D', data, '-k', dir, '-c', "listen_addresses=", '-c', 'max_connections=200', '-c', 'shared_buffers=32MB'], { stdio: ['ignore', 'ignore', 'pipe'], ...(user ? { uid: user.uid, gid: user.gid } : {}) });
    let log = '';
    p.stderr?.on('data', (d: Buffer) => void (log += d.toString()));
    child = p;
    const exited = new Promise<never>((_, reject) => p.once('exit', (code) => reject(new Error(`postgres exited ${code}: ${log}`))));
    exited.catch(() => undefined);
    // Ready when it accepts a connection; the log line is not a contract, a connection is.
    for (let i = 0; ; i++) {
      const c = new pg.Client({ connectionString: url });
      try {
        await Promise.race([c.connect(), exited]);
        await c.end();
        return;
      } catch (e) {
        await c.end().catch(() => undefined);
        if (p.exitCode !== null || i > 400) throw e;
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  };
  const stop = async (): Promise<void> => {
    const p = child;
    child = undefined;
    if (!p || p.exitCode !== null) return;
    const done = new Promise((r) => p.once('exit', r));
    p.kill('SIGINT'); // fast shutdown: disconnect clients, checkpoint, exit
    await done;
  };
  await start();
  let n = 0;
  return {
    url,
    async database(name: string) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      const db = `${name.replace(/[^a-z0-9_]/g, '_')}_${n++}`;
      await c.query(`CREATE DATABASE ${db}`);
      await c.end();
      return url.replace('/postgres?', `/${db}?`);
    },
    dump(dbUrl: string) {
      return withoutRestrictKey(execFileSync(join(bin, 'pg_dump'), ['--no-owner', '--format=plain', '-d', dbUrl], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }));
    },
    stop,
    start,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function externalServer(url: string, bin: string | undefined): PgServer {
  let n = 0;
  const tag = `gm_t${process.pid}`;
  return {
    url,
    async database(name: string) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      const db = `${tag}_${name.replace(/[^a-z0-9_]/g, '_')}_${n++}`;
      await c.query(`CREATE DATABASE ${db}`);
      await c.end();
      const u = new URL(url);
      u.pathname = `/${db}`;
      return u.toString();
    },
    dump(dbUrl: string) {
      return withoutRestrictKey(execFileSync(bin ? join(bin, 'pg_dump') : 'pg_dump', ['--no-owner', '--format=plain', '-d', dbUrl], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }));
    },
    async stop() {
      throw new Error('GM_PG_URL: an external server cannot be restarted by the tests');
    },
    async start() {
      throw new Error('GM_PG_URL: an external server cannot be restarted by the tests');
    },
    async close() {},
  };
}

const withoutRestrictKey = (dump: string): string => dump.split('\n').filter((l) => !/^\\(un)?restrict /.test(l)).join('\n');
