import { ChildProcess, spawn } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import Redis from 'ioredis';
import { Client } from 'pg';
import { ApiClient } from '../../test/support/api-client';
import { run, virsh } from '../../test/support/libvirt/exec';
import { scatteredOffsets } from '../../test/support/libvirt/guest-writes';
import { createTestDomain, TestDomain } from '../../test/support/libvirt/test-domain';

/*
 * What the benchmarks share: processes and their clean-up, a throw-away strata (database, Redis prefix, API,
 * agent, zone, local repository, offering), the 2 GiB data set, data-holding domains, scattered guest writes,
 * and a backup timed from createBackup to BackedUp. Benchmarks print figures and assert nothing.
 */

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
const DATA_BYTES = 2 * GiB;
const RANDOM_BYTES = 1 * GiB;
export const BLOCK = 64 * 1024;
export const WRITES = 1024;
export const SEED = 'strata-bench-backup/1';
export const CLI = resolve(__dirname, '../../apps/cli/src/main.js');
const ADMIN_URL = process.env.STRATA_BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.STRATA_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const BACKUP_TIMEOUT_MS = 15 * 60_000;

let benchName = 'bench';
/** Names the benchmark in its log lines. */
export function setBenchName(name: string): void {
  benchName = name;
}

export const log = (msg: string) => process.stderr.write(`[${benchName} ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------------------------------------- clean-up

const cleanups: { what: string; fn: () => Promise<unknown> }[] = [];
export const onCleanup = (what: string, fn: () => Promise<unknown>) => cleanups.push({ what, fn });
let cleaning: Promise<void> | undefined;

export function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      const { what, fn } = cleanups.pop()!;
      try {
        await fn();
      } catch (error) {
        log(`clean-up of ${what} failed: ${(error as Error).message}`);
      }
    }
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

// ------------------------------------------------------------------------------------------- processes

export interface Proc {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

export function startProcess(command: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 256 * 1024) out = out.slice(-128 * 1024);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((r) => {
    child.on('exit', (code) => r(code));
    child.on('error', (e) => {
      out += `\n${e.message}`;
      r(-1);
    });
  });
  return { child, output: () => out, exited };
}

export async function stopProcess(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await p.exited;
  clearTimeout(timer);
}

export const startStrata = (args: string[], env: NodeJS.ProcessEnv) => startProcess(process.execPath, [CLI, ...args], env);

export async function runStrata(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; output: string }> {
  const p = startStrata(args, env);
  let stdout = '';
  p.child.stdout!.on('data', (d) => (stdout += d));
  const code = await p.exited;
  return { code, stdout, output: p.output() };
}

export async function until<T>(probe: () => Promise<T | undefined | null | false>, timeoutMs: number, what: () => string, intervalMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export async function duBytes(path: string): Promise<number> {
  if (!existsSync(path)) return 0;
  const r = await run('du', ['-sb', path]);
  return Number(r.stdout.split(/\s/)[0]);
}

// ------------------------------------------------------------------------------------------------ data

/** 1 GiB of AES-256-CTR keystream (seeded, so the same every run), then 1 GiB of repetitive text. */
export async function makeDataFile(path: string): Promise<void> {
  const key = createHash('sha256').update(`${SEED}/key`).digest();
  const iv = createHash('sha256').update(`${SEED}/iv`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  const chunk = 8 * MiB;
  const zeros = Buffer.alloc(chunk);
  const lines: string[] = [];
  for (let i = 0, n = 0; n < chunk; i++) {
    const line = `${String(i).padStart(6, '0')} strata backup bench: the quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet.\n`;
    lines.push(line);
    n += line.length;
  }
  const text = Buffer.from(lines.join('')).subarray(0, chunk);
  const fh = await open(path, 'w');
  try {
    let written = 0;
    while (written < RANDOM_BYTES) {
      const buf = cipher.update(zeros);
      await fh.write(buf, 0, buf.length, written);
      written += buf.length;
    }
    while (written < DATA_BYTES) {
      await fh.write(text, 0, text.length, written);
      written += text.length;
    }
  } finally {
    await fh.close();
  }
}

/** A stopped test domain whose single disk vda is a qcow2 of `sizeGiB` holding the data file; 256 MiB of RAM. */
export async function dataDomain(sourceQcow2: string, sizeGiB: number): Promise<TestDomain> {
  const domain = await createTestDomain({ disks: [{ sizeMiB: sizeGiB * 1024 }], running: false });
  onCleanup(`domain ${domain.name}`, () => domain.destroy());
  const disk = domain.disk('vda');
  await run('cp', ['--sparse=always', sourceQcow2, disk.path], { timeoutMs: 300_000 });
  await run('qemu-img', ['resize', '-q', '-f', 'qcow2', disk.path, `${sizeGiB}G`]);
  await virsh(['setmaxmem', domain.name, '256M', '--config']);
  await virsh(['setmem', domain.name, '256M', '--config']);
  await domain.start();
  return domain;
}

/**
 * 1024 writes of 64 KiB (pattern 0x01..0xfe) at seeded offsets, through HMP qemu-io on the running domain,
 * sent through a few virsh processes; each is checked in the domain's QEMU log, as the test rig does.
 */
export async function scatteredWrites(domain: TestDomain, seed: string): Promise<{ offsets: number[]; seconds: number }> {
  const t0 = performance.now();
  const offsets = scatteredOffsets(seed, domain.disk('vda').sizeBytes, WRITES, BLOCK);
  const node = await domain.nodeName('vda', { refresh: true });
  const from = existsSync(domain.qemuLogPath) ? (await stat(domain.qemuLogPath)).size : 0;
  const commands = offsets.map(
    (off, i) => `qemu-monitor-command ${domain.name} --hmp 'qemu-io ${node} "write -P 0x${((i % 254) + 1).toString(16).padStart(2, '0')} ${off} 64k"'`,
  );
  // virsh runs `cmd; cmd; ...` given as one argument (one argument may hold at most 128 KiB: 256 commands a go).
  for (let i = 0; i < commands.length; i += 256) {
    const r = await virsh([commands.slice(i, i + 256).join(' ; ')], { timeoutMs: 120_000 });
    // HMP qemu-io answers nothing on success; anything else ("Cannot find device", ...) is an error.
    if (r.stdout.trim() || r.stderr.trim()) throw new Error(`virsh qemu-io writes on ${domain.name}: ${(r.stdout + r.stderr).trim().slice(0, 2000)}`);
  }
  const expected = new Set(offsets.map((o) => `wrote ${BLOCK}/${BLOCK} bytes at offset ${o}`));
  await until(
    async () => {
      const fh = await open(domain.qemuLogPath, 'r');
      let text: string;
      try {
        const size = (await fh.stat()).size;
        const buf = Buffer.alloc(Math.max(0, size - from));
        await fh.read(buf, 0, buf.length, from);
        text = buf.toString('utf8');
      } finally {
        await fh.close();
      }
      const lines = text.split('\n').slice(0, -1);
      const failure = lines.find((l) => l && !/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}/.test(l) && !/^[\d.]+ \w*(bytes|B), \d+ ops; /.test(l) && !l.startsWith('wrote '));
      if (failure) throw new Error(`qemu-io on ${domain.name}: ${failure}`);
      return lines.filter((l) => expected.has(l)).length === expected.size;
    },
    60_000,
    () => `${WRITES} qemu-io results in ${domain.qemuLogPath}`,
    50,
  );
  return { offsets, seconds: (performance.now() - t0) / 1000 };
}

// ------------------------------------------------------------------------------------------------ strata

export interface Backup {
  id: string;
  type: string;
  status: string;
  size: number;
  fullreason?: string;
}

export interface Plane {
  api: ApiClient;
  agent: Proc;
  apiProc: Proc;
  offeringId: string;
}

/**
 * `heartbeatSeconds`: the agent's heartbeat and domain-report interval. 1 s lists new domains at once (what
 * the backup and restore benches wait for); each beat is a domain report (virsh and qemu-img per disk), so a
 * bench that times CPU-bound work on the host takes hosts' default, 10 s.
 */
export async function startPlane(work: string, offering: Record<string, string> = {}, options: { heartbeatSeconds?: number } = {}): Promise<Plane> {
  const dbName = `strata_benchbk_${randomBytes(5).toString('hex')}`;
  const admin = new Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${dbName}`);
  } finally {
    await admin.end();
  }
  onCleanup(`database ${dbName}`, async () => {
    const c = new Client({ connectionString: ADMIN_URL });
    await c.connect();
    try {
      await c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    } finally {
      await c.end();
    }
  });
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${dbName}`;
  const prefix = `bench${randomBytes(4).toString('hex')}`;
  onCleanup(`redis keys ${prefix}:*`, async () => {
    const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
  });
  const base = { PATH: process.env.PATH, HOME: process.env.HOME, STRATA_REDIS_URL: REDIS_URL, STRATA_QUEUE_PREFIX: prefix, STRATA_LOG_LEVEL: 'info' };
  const env = { ...base, STRATA_DATABASE_URL: dbUrl.toString(), STRATA_MASTER_KEY_FILE: join(work, 'master.key'), STRATA_API_PORT: '0', STRATA_API_HOST: '127.0.0.1' };
  const migrate = await runStrata(['migrate'], env);
  if (migrate.code !== 0) throw new Error(`strata migrate failed: ${migrate.output}`);
  const apiProc = startStrata(['api'], env);
  onCleanup('strata api', () => stopProcess(apiProc));
  const endpoint = await until(
    async () => {
      if (apiProc.child.exitCode !== null) throw new Error(`strata api exited: ${apiProc.output()}`);
      return /listening on (\S+)/.exec(apiProc.output())?.[1];
    },
    30_000,
    () => `strata api to listen (output: ${apiProc.output()})`,
    50,
  );
  const keys = await runStrata(['keys', 'create', '--role', 'Admin', '--name', 'bench', '--json'], env);
  if (keys.code !== 0) throw new Error(`strata keys create failed: ${keys.output}`);
  const { apikey, secretkey } = JSON.parse(keys.stdout) as { apikey: string; secretkey: string };
  const api = new ApiClient(new URL(endpoint).origin, apikey, secretkey);
  const ok = okFor(api);
  const zone = (await ok('createZone', { name: 'bench-zone' })).zone as { id: string };
  const repoDir = join(work, 'strata-repo');
  await mkdir(repoDir);
  await ok('addBackupRepository', { name: 'local', type: 'local', address: repoDir, zoneid: zone.id });
  const native = (await ok('createNativeBackupOffering', { name: 'bench', backupchainsize: '8', ...offering })).nativebackupoffering as { id: string };
  const imported = await ok('importBackupOffering', { name: 'bench', description: 'bench', zoneid: zone.id, externalid: native.id, allowuserdrivenbackups: 'true' });
  const job = await api.waitForJob(imported.jobid as string);
  if (job.jobstatus !== 1) throw new Error(`importBackupOffering failed: ${JSON.stringify(job.jobresult)}`);
  const agent = startStrata(['agent'], {
    ...base,
    STRATA_AGENT_HOST_NAME: `strata-bench-${randomBytes(3).toString('hex')}`,
    STRATA_AGENT_ZONE: 'bench-zone',
    STRATA_AGENT_HEARTBEAT_SECONDS: String(options.heartbeatSeconds ?? 1),
  });
  onCleanup('strata agent', () => stopProcess(agent));
  return { api, agent, apiProc, offeringId: (job.jobresult.backupoffering as { id: string }).id };
}

export function okFor(api: ApiClient) {
  return async (command: string, params: Record<string, string>) => {
    const r = await api.call(command, params);
    if (r.status !== 200) throw new Error(`${command}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body[`${command.toLowerCase()}response`] as Record<string, unknown>;
  };
}

export async function assignToOffering(plane: Plane, domain: TestDomain): Promise<void> {
  const ok = okFor(plane.api);
  await until(
    async () => ((await ok('listVirtualMachines', { id: domain.uuid })).virtualmachine as unknown[] | undefined)?.[0],
    60_000,
    () => `${domain.name} in listVirtualMachines (agent: ${plane.agent.output().slice(-2000)})`,
    200,
  );
  const assigned = await ok('assignVirtualMachineToBackupOffering', { virtualmachineid: domain.uuid, backupofferingid: plane.offeringId });
  const job = await plane.api.waitForJob(assigned.jobid as string);
  if (job.jobstatus !== 1) throw new Error(`assignVirtualMachineToBackupOffering failed: ${JSON.stringify(job.jobresult)}`);
}

export interface Figure {
  seconds: number;
  bytes: number;
  note?: string;
}

export async function strataBackup(plane: Plane, domain: TestDomain, name: string): Promise<Figure & { type: string }> {
  const ok = okFor(plane.api);
  const t0 = performance.now();
  const started = await ok('createBackup', { virtualmachineid: domain.uuid, name });
  const backup = await until(
    async () => {
      const b = ((await ok('listBackups', { id: started.id as string })).backup as Backup[] | undefined)?.[0];
      if (b && (b.status === 'Failed' || b.status === 'Error')) {
        const job = await plane.api.call('queryAsyncJobResult', { jobid: started.jobid as string });
        throw new Error(`strata backup ${name} ${b.status}: ${JSON.stringify(job.body)} (agent: ${plane.agent.output().slice(-2000)})`);
      }
      return b?.status === 'BackedUp' ? b : undefined;
    },
    BACKUP_TIMEOUT_MS,
    () => `backup ${name} to be BackedUp (agent: ${plane.agent.output().slice(-2000)})`,
    // virtnbdbackup's time is its process' exact wall time; a coarse poll would add up to its interval here.
    20,
  );
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, bytes: backup.size, type: backup.type, note: backup.type === 'FULL' && backup.fullreason ? `FULL: ${backup.fullreason}` : backup.type };
}

/** Checks the compiled CLI is there and can resolve node_modules (execa is ESM: NODE_PATH won't do). */
export function requireCompiledCli(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: compile the tree (with this bench) into the same outDir first`);
  try {
    require.resolve('execa', { paths: [dirname(CLI)] });
  } catch {
    throw new Error(`the strata CLI at ${CLI} cannot find node_modules: ln -sfn "$PWD/node_modules" ${resolve(__dirname, '../../node_modules')}`);
  }
}

/** The median of some figures (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
}

export function secondsSince(t0: number): string {
  return ((performance.now() - t0) / 1000).toFixed(1);
}
