import { ChildProcess, spawn } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import Redis from 'ioredis';
import { Client } from 'pg';
import { ApiClient } from '../../test/support/api-client';
import { LIBVIRT_URI, run, virsh } from '../../test/support/libvirt/exec';
import { scatteredOffsets } from '../../test/support/libvirt/guest-writes';
import { createTestDomain, TestDomain } from '../../test/support/libvirt/test-domain';

/*
 * bench/backup: prints figures, asserts nothing; exits non-zero only when something breaks.
 *
 * A 4 GiB disk holding 2 GiB of data (1 GiB from a seeded PRNG, 1 GiB of repetitive text); a full backup;
 * then 1024 scattered 64 KiB writes (64 MiB) and an incremental. virtnbdbackup (Debian package) takes a full
 * and an incremental of an identical domain with identical writes in the same run; strata also takes the same
 * incremental of a 16 GiB disk with the same 2 GiB of data. strata's seconds run from the createBackup request
 * to status BackedUp in listBackups; its MiB stored is listBackups' `size`. virtnbdbackup's seconds are its
 * process' wall time, its MiB stored the bytes its run added to the output directory (`du -sb`).
 *
 * Needs: the compiled tree (this file's outDir also holds apps/cli/src/main.js, and node_modules there: a symlink
 * to the repository's when the outDir is elsewhere; see the bench:backup npm script), PostgreSQL (trust auth,
 * STRATA_BENCH_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres), Redis (STRATA_BENCH_REDIS_URL,
 * default redis://127.0.0.1:6379), libvirt (qemu:///system, STRATA_TEST_LIBVIRT_URI), qemu-img, and for the
 * comparison `apt-get install -y virtnbdbackup`. About 12 GiB of free space in the temp directory.
 */

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const DATA_BYTES = 2 * GiB;
const RANDOM_BYTES = 1 * GiB;
const BLOCK = 64 * 1024;
const WRITES = 1024;
const SEED = 'strata-bench-backup/1';
const CLI = resolve(__dirname, '../../apps/cli/src/main.js');
const ADMIN_URL = process.env.STRATA_BENCH_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.STRATA_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const BACKUP_TIMEOUT_MS = 15 * 60_000;

const log = (msg: string) => process.stderr.write(`[bench:backup ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------------------------------------- clean-up

const cleanups: { what: string; fn: () => Promise<unknown> }[] = [];
const onCleanup = (what: string, fn: () => Promise<unknown>) => cleanups.push({ what, fn });
let cleaning: Promise<void> | undefined;

function cleanUp(): Promise<void> {
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

interface Proc {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function startProcess(command: string, args: string[], env: NodeJS.ProcessEnv): Proc {
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

async function stopProcess(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await p.exited;
  clearTimeout(timer);
}

const startStrata = (args: string[], env: NodeJS.ProcessEnv) => startProcess(process.execPath, [CLI, ...args], env);

async function runStrata(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; output: string }> {
  const p = startStrata(args, env);
  let stdout = '';
  p.child.stdout!.on('data', (d) => (stdout += d));
  const code = await p.exited;
  return { code, stdout, output: p.output() };
}

async function until<T>(probe: () => Promise<T | undefined | null | false>, timeoutMs: number, what: () => string, intervalMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

async function duBytes(path: string): Promise<number> {
  if (!existsSync(path)) return 0;
  const r = await run('du', ['-sb', path]);
  return Number(r.stdout.split(/\s/)[0]);
}

// ------------------------------------------------------------------------------------------------ data

/** 1 GiB of AES-256-CTR keystream (seeded, so the same every run), then 1 GiB of repetitive text. */
async function makeDataFile(path: string): Promise<void> {
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
async function dataDomain(sourceQcow2: string, sizeGiB: number): Promise<TestDomain> {
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
async function scatteredWrites(domain: TestDomain, seed: string): Promise<{ offsets: number[]; seconds: number }> {
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

interface Backup {
  id: string;
  type: string;
  status: string;
  size: number;
  fullreason?: string;
}

interface Plane {
  api: ApiClient;
  agent: Proc;
  apiProc: Proc;
  offeringId: string;
}

async function startPlane(work: string): Promise<Plane> {
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
  const native = (await ok('createNativeBackupOffering', { name: 'bench', backupchainsize: '8' })).nativebackupoffering as { id: string };
  const imported = await ok('importBackupOffering', { name: 'bench', description: 'bench', zoneid: zone.id, externalid: native.id, allowuserdrivenbackups: 'true' });
  const job = await api.waitForJob(imported.jobid as string);
  if (job.jobstatus !== 1) throw new Error(`importBackupOffering failed: ${JSON.stringify(job.jobresult)}`);
  const agent = startStrata(['agent'], {
    ...base,
    STRATA_AGENT_HOST_NAME: `strata-bench-${randomBytes(3).toString('hex')}`,
    STRATA_AGENT_ZONE: 'bench-zone',
    STRATA_AGENT_HEARTBEAT_SECONDS: '1',
  });
  onCleanup('strata agent', () => stopProcess(agent));
  return { api, agent, apiProc, offeringId: (job.jobresult.backupoffering as { id: string }).id };
}

function okFor(api: ApiClient) {
  return async (command: string, params: Record<string, string>) => {
    const r = await api.call(command, params);
    if (r.status !== 200) throw new Error(`${command}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body[`${command.toLowerCase()}response`] as Record<string, unknown>;
  };
}

async function assignToOffering(plane: Plane, domain: TestDomain): Promise<void> {
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

interface Figure {
  seconds: number;
  bytes: number;
  note?: string;
}

async function strataBackup(plane: Plane, domain: TestDomain, name: string): Promise<Figure & { type: string }> {
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
    100,
  );
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, bytes: backup.size, type: backup.type, note: backup.type === 'FULL' && backup.fullreason ? `FULL: ${backup.fullreason}` : backup.type };
}

// ----------------------------------------------------------------------------------------- virtnbdbackup

type VnbdResult = Figure | { error: string };

async function virtnbdbackup(domain: TestDomain, level: 'full' | 'inc', out: string, scratch: string): Promise<VnbdResult> {
  const before = await duBytes(out);
  const args = ['-d', domain.name, '-l', level, '-o', out, '-S', scratch, '-n'];
  if (LIBVIRT_URI !== 'qemu:///system') args.push('-U', LIBVIRT_URI);
  const t0 = performance.now();
  const p = startProcess('virtnbdbackup', args, { ...process.env });
  onCleanup(`virtnbdbackup ${level}`, () => stopProcess(p));
  const code = await p.exited;
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0) {
    const lines = p.output().trim().split('\n');
    return { error: `virtnbdbackup ${args.join(' ')} exited ${code}: ${lines.filter((l) => /ERROR|Error|error|Traceback|No such/.test(l)).concat(lines.slice(-5)).slice(-8).join(' | ')}` };
  }
  return { seconds, bytes: (await duBytes(out)) - before };
}

async function virtnbdbackupAvailable(): Promise<string | null> {
  const r = await run('virtnbdbackup', ['--version'], { allowFailure: true }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
  if (r.code !== 0) return `virtnbdbackup is not usable here (${(r.stderr || r.stdout).trim().split('\n').slice(-1)[0]}); install it with: apt-get install -y virtnbdbackup`;
  log(`virtnbdbackup ${r.stdout.trim() || r.stderr.trim()}`);
  return null;
}

// ------------------------------------------------------------------------------------------------- main

const fmt = (f: Figure | { error: string } | undefined) =>
  !f ? 'n/a' : 'error' in f ? 'failed' : `${f.seconds.toFixed(2)} s, ${(f.bytes / MiB).toFixed(1)} MiB`;
const ratio = (a: Figure | undefined, b: VnbdResult | Figure | undefined) =>
  a && b && !('error' in b) && b.seconds > 0 ? (a.seconds / b.seconds).toFixed(2) : 'n/a';

async function main(): Promise<number> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: compile the tree (with this bench) into the same outDir first`);
  // A build outside the repository needs the repository's node_modules beside it (execa is ESM: NODE_PATH won't do).
  try {
    require.resolve('execa', { paths: [dirname(CLI)] });
  } catch {
    throw new Error(`the strata CLI at ${CLI} cannot find node_modules: ln -sfn "$PWD/node_modules" ${resolve(__dirname, '../../node_modules')}`);
  }
  const totalT0 = performance.now();
  const vnbdMissing = await virtnbdbackupAvailable();
  if (vnbdMissing) log(vnbdMissing);

  const work = await mkdtemp(join(tmpdir(), 'strata-bench-backup-'));
  onCleanup(`temp dir ${work}`, () => rm(work, { recursive: true, force: true }));
  log(`work dir ${work}; libvirt ${LIBVIRT_URI}`);

  log('making 2 GiB of data (1 GiB AES-CTR, 1 GiB text) and its qcow2');
  let t = performance.now();
  const raw = join(work, 'data.raw');
  await makeDataFile(raw);
  const base = join(work, 'data.qcow2');
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, base], { timeoutMs: 600_000 });
  await rm(raw);
  log(`data ready in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  t = performance.now();
  const plane = await startPlane(work);
  log(`strata api and agent up (${d(t)} s)`);
  t = performance.now();
  const strata4 = await dataDomain(base, 4);
  const vnbd4 = vnbdMissing ? undefined : await dataDomain(base, 4);
  const strata16 = await dataDomain(base, 16);
  await rm(base);
  log(`domains ${[strata4, vnbd4, strata16].filter(Boolean).map((d) => d!.name).join(', ')} running (${d(t)} s)`);
  await assignToOffering(plane, strata4);
  await assignToOffering(plane, strata16);

  const vnbdOut = join(work, 'virtnbdbackup');
  const scratch = join(work, 'scratch');
  await mkdir(scratch);
  let vf: VnbdResult | undefined;
  let vi: VnbdResult | undefined;

  log('strata full, 4 GiB');
  const sFull4 = await strataBackup(plane, strata4, 'full-4g');
  log(`  ${fmt(sFull4)}`);
  if (vnbd4) {
    log('virtnbdbackup full, 4 GiB');
    vf = await virtnbdbackup(vnbd4, 'full', vnbdOut, scratch);
    log(`  ${fmt(vf)}`);
  }
  log('strata full, 16 GiB');
  const sFull16 = await strataBackup(plane, strata16, 'full-16g');
  log(`  ${fmt(sFull16)}`);

  for (const dom of [strata4, vnbd4, strata16]) {
    if (!dom) continue;
    const w = await scatteredWrites(dom, `${SEED}/writes`);
    log(`1024 x 64 KiB written to ${dom.name} (${dom.disk('vda').sizeBytes / GiB} GiB) in ${w.seconds.toFixed(1)} s`);
  }

  log('strata incremental, 4 GiB');
  const sInc4 = await strataBackup(plane, strata4, 'inc-4g');
  log(`  ${fmt(sInc4)} (${sInc4.note})`);
  if (vnbd4 && vf && !('error' in vf)) {
    log('virtnbdbackup incremental, 4 GiB');
    vi = await virtnbdbackup(vnbd4, 'inc', vnbdOut, scratch);
    log(`  ${fmt(vi)}`);
  }
  log('strata incremental, 16 GiB');
  const sInc16 = await strataBackup(plane, strata16, 'inc-16g');
  log(`  ${fmt(sInc16)} (${sInc16.note})`);

  const vnbdName = 'virtnbdbackup';
  const rows = [
    `strata full 4 GiB: ${fmt(sFull4)} | ${vnbdName} full: ${fmt(vf)} | ratio ${ratio(sFull4, vf)} (target <= 1.0)`,
    `strata incremental 4 GiB: ${fmt(sInc4)} | ${vnbdName} incremental: ${fmt(vi)} | ratio ${ratio(sInc4, vi)} (target <= 0.5)`,
    `strata incremental 16 GiB: ${fmt(sInc16)} | strata incremental 4 GiB: ${fmt(sInc4)} | ratio 16/4 ${ratio(sInc16, sInc4)} (target <= 1.3)`,
    `strata full 16 GiB (not a target): ${fmt(sFull16)}`,
    `MiB stored, strata/virtnbdbackup: full ${mibRatio(sFull4, vf)}, incremental ${mibRatio(sInc4, vi)} (not targets)`,
    `strata backup types: full 4 GiB ${sFull4.note}, incremental 4 GiB ${sInc4.note}, full 16 GiB ${sFull16.note}, incremental 16 GiB ${sInc16.note}`,
  ];
  console.log('\nbench:backup (2 GiB of data: 1 GiB random, 1 GiB text; incremental = 1024 x 64 KiB scattered writes)');
  for (const row of rows) console.log(`  ${row}`);
  let failed = false;
  for (const [label, f] of [['full', vf], ['incremental', vi]] as const) {
    if (f && 'error' in f) {
      console.log(`  virtnbdbackup ${label} failed: ${f.error}`);
      failed = true;
    }
  }
  if (vnbdMissing) console.log(`  virtnbdbackup: n/a: ${vnbdMissing}`);
  console.log(`  total bench time ${d(totalT0)} s`);
  return failed ? 1 : 0;
}

function mibRatio(a: Figure, b: VnbdResult | undefined): string {
  return b && !('error' in b) && b.bytes > 0 ? (a.bytes / b.bytes).toFixed(2) : 'n/a';
}

function d(t0: number): string {
  return ((performance.now() - t0) / 1000).toFixed(1);
}

main()
  .then(async (code) => {
    await cleanUp();
    process.exit(code);
  })
  .catch(async (error: Error) => {
    console.error(`bench:backup failed: ${error.stack ?? error.message}`);
    await cleanUp();
    process.exit(1);
  });
