import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ExecaProcessRunner, QemuImgDriver } from '@strata/hypervisor';
import { run } from '../../test/support/libvirt/exec';
import {
  assignToOffering,
  cleanUp,
  dataDomain,
  GiB,
  log,
  makeDataFile,
  median,
  MiB,
  okFor,
  onCleanup,
  Plane,
  requireCompiledCli,
  secondsSince,
  setBenchName,
  startPlane,
  strataBackup,
  until,
} from '../support/bench-kit';

/*
 * bench/compression: prints figures, asserts nothing; exits non-zero only when something breaks.
 *
 * A 4 GiB disk holding 2 GiB of data (1 GiB from a seeded PRNG, 1 GiB of repetitive text) is backed up full
 * on an offering with compress=true while backup.compression.task.enabled is false. Per round, in the same
 * run: the backup file is copied; a bare `qemu-img convert -c -O qcow2 -o compression_type=zstd` of the
 * copy, and strata's own qemu-img invocation (QemuImgDriver.convertCompressed: create, then convert through
 * the compress filter, with strata's `-m`) run bare on it; strata's Starting job on the backup (task
 * enabled again); both bare runs again. Before each timed run the kernel is brought to the same state
 * (settle: sync, page cache dropped, the run's input read once), so no run pays for another's writeback or
 * cache. The first rounds use the default backup.compression.coroutines (1), the next ones 8 (qemu-img's
 * own default), each on a new full backup. strata's seconds are what the agent measured from the attempt's
 * start to its report (free-space check, info, create and convert, qemu-img check, fsync, rename); the
 * API-observed seconds run from enabling the task to the job being Done in listBackupCompressionJobs.
 * Throughput is the backup file's allocated bytes over seconds; a bare figure is the mean of its runs
 * before and after; each setting runs STRATA_BENCH_ROUNDS rounds (default 3, each on a fresh backup) and
 * the ratios are medians, since a shared machine makes single runs vary widely.
 *
 * Needs what bench:backup needs (compiled tree, PostgreSQL, Redis, libvirt, qemu-img; no virtnbdbackup),
 * and about 8 GiB free in the temp directory.
 */

setBenchName('bench:compression');

/** Rounds per setting (each with a fresh backup); the figures are medians. */
const ROUNDS = Math.max(1, Number(process.env.STRATA_BENCH_ROUNDS ?? 3));

interface Timed {
  seconds: number;
  outBytes: number;
}

interface CompressionJob {
  id: string;
  type: string;
  status: string;
  attempts: number;
}

interface Backup {
  id: string;
  chainid: string;
  size: number;
  uncompressedsize: number;
  compressionstatus: string;
  volumes: { id: string }[];
}

async function allocated(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

async function bareConvert(file: string, out: string): Promise<Timed> {
  await rm(out, { force: true });
  const t0 = performance.now();
  await run('qemu-img', ['convert', '-q', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', file, out], { timeoutMs: 3_600_000 });
  return timed(t0, out);
}

const qemuImg = new QemuImgDriver(new ExecaProcessRunner());

/** strata's own invocation, without the job around it: how much of the job is qemu-img's. */
async function bareStrataInvocation(file: string, out: string, coroutines: number): Promise<Timed> {
  await rm(out, { force: true });
  const sizeBytes = (await qemuImg.info(file, { format: 'qcow2' })).virtualSizeBytes;
  const t0 = performance.now();
  await qemuImg.convertCompressed(file, out, { sourceFormat: 'qcow2', sizeBytes, compressionType: 'zstd', coroutines, timeoutMs: 3_600_000 });
  return timed(t0, out);
}

async function timed(t0: number, out: string): Promise<Timed> {
  const seconds = (performance.now() - t0) / 1000;
  const outBytes = await allocated(out);
  await rm(out, { force: true });
  return { seconds, outBytes };
}

/**
 * The same state of the kernel before every timed run: written data on disk, the page cache emptied, then
 * the run's input read once. A qemu-img's kernel time varied twofold (2.3 to 5.0 s) with what the run
 * before it had left in the page cache; user time did not (1.6 to 2.0 s).
 */
async function settle(input: string): Promise<void> {
  await run('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3').catch(() => undefined); // root only; without it, sync alone
  await run('dd', [`if=${input}`, 'of=/dev/null', 'bs=4M', 'status=none'], { timeoutMs: 600_000 });
}

async function setting(plane: Plane, name: string, value: string): Promise<void> {
  await okFor(plane.api)('updateConfiguration', { name, value });
}

/** A full backup taken while compression is held back; returns it and its file. */
async function heldBackup(plane: Plane, domain: Parameters<typeof assignToOffering>[1], repoDir: string, name: string): Promise<{ backup: Backup; file: string }> {
  await setting(plane, 'backup.compression.task.enabled', 'false');
  const taken = await strataBackup(plane, domain, name);
  log(`  backup ${name}: ${taken.seconds.toFixed(1)} s, ${(taken.bytes / MiB).toFixed(0)} MiB (${taken.type})`);
  const backups = (await okFor(plane.api)('listBackups', { name })).backup as Backup[];
  const backup = backups[0];
  return { backup, file: join(repoDir, domain.uuid, backup.chainid, backup.id, `${backup.volumes[0].id}.qcow2`) };
}

/** Enables the task and times the backup's Starting job (agent-measured and API-observed) and its Finalizing job. */
async function strataCompression(plane: Plane, backupId: string): Promise<{ agentSeconds: number; convertSeconds: number | null; apiSeconds: number; finalizingSeconds: number | null; backup: Backup }> {
  const ok = okFor(plane.api);
  const jobs = async () => ((await ok('listBackupCompressionJobs', { backupid: backupId })).backupcompressionjob as CompressionJob[] | undefined) ?? [];
  const before = plane.agent.output().length;
  const t0 = performance.now();
  await setting(plane, 'backup.compression.task.enabled', 'true');
  // Quiet while qemu-img runs (API calls cost CPU the bare command does not pay): watch the agent's log,
  // which this process already holds, and ask the API only once the job has reported.
  await until(
    async () => new RegExp(`compression (Starting \\S+ of backup ${backupId} attempt \\d+: done|Starting \\S+ of backup ${backupId} attempt \\d+ failed)`).test(plane.agent.output().slice(before)),
    3_600_000,
    () => `the agent to report the Starting job of ${backupId}`,
    50,
  );
  const starting = await until(
    async () => {
      const j = (await jobs()).find((x) => x.type === 'Starting');
      if (j && j.status === 'Failed') throw new Error(`the Starting job failed: ${JSON.stringify(j)} (agent: ${plane.agent.output().slice(-2000)})`);
      return j?.status === 'Done' ? j : undefined;
    },
    600_000,
    () => `the Starting job of ${backupId} to be Done`,
    25,
  );
  const apiSeconds = (performance.now() - t0) / 1000;
  const backup = await until(
    async () => {
      const b = ((await ok('listBackups', { id: backupId })).backup as Backup[])[0];
      if (b.compressionstatus === 'CompressionError') throw new Error(`compression failed (agent: ${plane.agent.output().slice(-2000)})`);
      return b.compressionstatus === 'Compressed' ? b : undefined;
    },
    600_000,
    () => `backup ${backupId} to be Compressed`,
    250,
  );
  const out = plane.agent.output().slice(before);
  const seconds = (type: string, jobId?: string) => {
    const m = new RegExp(`compression ${type} ${jobId ?? '\\S+'} of backup ${backupId} attempt \\d+: done in ([\\d.]+) s`).exec(out);
    return m ? Number(m[1]) : null;
  };
  const agentSeconds = seconds('Starting', starting.id);
  if (agentSeconds === null) throw new Error(`no duration of the Starting job in the agent's log: ${out.slice(-2000)}`);
  const convert = new RegExp(`compression ${starting.id} attempt \\d+: qemu-img convert ran ([\\d.]+) s`).exec(out);
  return { agentSeconds, convertSeconds: convert ? Number(convert[1]) : null, apiSeconds, finalizingSeconds: seconds('Finalizing'), backup };
}

const mibps = (bytes: number, seconds: number) => `${(bytes / MiB / seconds).toFixed(1)} MiB/s`;

async function main(): Promise<number> {
  requireCompiledCli();
  const totalT0 = performance.now();
  const work = await mkdtemp(join(tmpdir(), 'strata-bench-compression-'));
  onCleanup(`temp dir ${work}`, () => rm(work, { recursive: true, force: true }));
  log(`work dir ${work}`);

  log('making 2 GiB of data (1 GiB AES-CTR, 1 GiB text) and its qcow2');
  let t = performance.now();
  const raw = join(work, 'data.raw');
  await makeDataFile(raw);
  const base = join(work, 'data.qcow2');
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, base], { timeoutMs: 600_000 });
  await rm(raw);
  log(`data ready in ${secondsSince(t)} s`);

  t = performance.now();
  // The hosts' default heartbeat: the 1 s of the other benches is a domain report a second on a 2-core machine.
  const plane = await startPlane(work, { compress: 'true', compressionlibrary: 'zstd' }, { heartbeatSeconds: 10 });
  const repoDir = join(work, 'strata-repo');
  await setting(plane, 'backup.compression.task.enabled', 'false');
  const domain = await dataDomain(base, 4);
  await rm(base);
  await assignToOffering(plane, domain);
  // The agent may have seen the disk before its resize: back up only once strata knows its real size.
  await until(
    async () => ((await okFor(plane.api)('listVirtualMachines', { id: domain.uuid })).virtualmachine as { volumes: { size: number }[] }[])[0]?.volumes[0]?.size === 4 * GiB,
    60_000,
    () => `${domain.name}'s disk to be listed with 4 GiB`,
    200,
  );
  log(`strata api, agent and domain ${domain.name} ready (${secondsSince(t)} s)`);

  // Each round: a fresh full backup held back and copied; the bare runs on the copy, strata's Starting job
  // on the backup, the bare runs on the copy again; settle() before each.
  const rounds: { coroutines: number; input: number; bare: Timed[]; bareOwn: Timed; strata: Awaited<ReturnType<typeof strataCompression>> }[] = [];
  const plan = [1, 8].flatMap((coroutines) => Array.from({ length: ROUNDS }, () => coroutines));
  for (const [i, coroutines] of plan.entries()) {
    await setting(plane, 'backup.compression.coroutines', String(coroutines));
    if (i > 0) await okFor(plane.api)('finishBackupChain', { virtualmachineid: domain.uuid }); // a full again
    const held = await heldBackup(plane, domain, repoDir, `full-${i + 1}`);
    const input = await allocated(held.file);
    const copy = join(work, 'copy.qcow2');
    await run('cp', ['--sparse=always', held.file, copy], { timeoutMs: 600_000 });
    const bareOut = join(work, 'bare.qcow2');
    // Before and after strata's job: the bare command as is (qemu-img's default -m 8), and strata's invocation.
    const bare: Timed[] = [];
    const bareOwnRuns: Timed[] = [];
    const bareRuns = async () => {
      await settle(copy);
      bare.push(await bareConvert(copy, bareOut));
      await settle(copy);
      bareOwnRuns.push(await bareStrataInvocation(copy, bareOut, coroutines));
    };
    await bareRuns();
    log(`round ${i + 1} (coroutines ${coroutines}), input ${(input / MiB).toFixed(0)} MiB: bare ${bare[0].seconds.toFixed(2)} s, strata's invocation bare ${bareOwnRuns[0].seconds.toFixed(2)} s`);
    await settle(held.file);
    const strata = await strataCompression(plane, held.backup.id);
    log(`  strata Starting job ${strata.agentSeconds.toFixed(2)} s on the agent (${strata.apiSeconds.toFixed(2)} s through the API), Finalizing ${strata.finalizingSeconds?.toFixed(2) ?? 'n/a'} s`);
    await bareRuns();
    log(`  bare again ${bare[1].seconds.toFixed(2)} s, strata's invocation bare ${bareOwnRuns[1].seconds.toFixed(2)} s`);
    const bareOwn = { seconds: (bareOwnRuns[0].seconds + bareOwnRuns[1].seconds) / 2, outBytes: bareOwnRuns[0].outBytes };
    await rm(copy, { force: true });
    rounds.push({ coroutines, input, bare, bareOwn, strata });
  }

  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rows = [`input: a full backup file of a 4 GiB disk holding 2 GiB of data (1 GiB random, 1 GiB text), ${(rounds[0].input / MiB).toFixed(0)} MiB allocated; ${ROUNDS} round(s) per setting`];
  for (const coroutines of [1, 8]) {
    const mine = rounds.filter((r) => r.coroutines === coroutines);
    const vsBare = mine.map((r) => mean(r.bare.map((b) => b.seconds)) / r.strata.agentSeconds);
    const vsOwn = mine.map((r) => r.bareOwn.seconds / r.strata.agentSeconds);
    const overhead = mine.filter((r) => r.strata.convertSeconds !== null).map((r) => r.strata.agentSeconds - r.strata.convertSeconds!);
    rows.push(`coroutines ${coroutines}${coroutines === 1 ? ' (default)' : " (qemu-img's own default)"}:`);
    for (const [k, r] of mine.entries()) {
      rows.push(
        `  round ${k + 1}: strata Starting job ${r.strata.agentSeconds.toFixed(2)} s (qemu-img convert ${r.strata.convertSeconds?.toFixed(1) ?? 'n/a'} s; ${r.strata.apiSeconds.toFixed(2)} s through the API) = ${mibps(r.input, r.strata.agentSeconds)}; bare ${r.bare.map((b) => `${b.seconds.toFixed(2)} s`).join(' / ')} (before / after), strata's invocation bare ${r.bareOwn.seconds.toFixed(2)} s (mean); Finalizing ${r.strata.finalizingSeconds?.toFixed(2) ?? 'n/a'} s`,
      );
    }
    rows.push(`  median throughput ratio strata/bare: ${median(vsBare).toFixed(2)} (target >= 0.9; per round ${vsBare.map((x) => x.toFixed(2)).join(', ')})`);
    rows.push(`  median ratio strata's job / strata's invocation run bare (the job's own cost): ${median(vsOwn).toFixed(2)} (per round ${vsOwn.map((x) => x.toFixed(2)).join(', ')})`);
    if (overhead.length) rows.push(`  the job's own time beyond qemu-img convert (free-space check, info, check, fsync, rename, report): median ${median(overhead).toFixed(2)} s`);
    const last = mine[mine.length - 1];
    rows.push(`  size ratio compressed/uncompressed: strata ${(last.strata.backup.size / last.strata.backup.uncompressedsize).toFixed(3)} (${(last.strata.backup.size / MiB).toFixed(1)} of ${(last.strata.backup.uncompressedsize / MiB).toFixed(1)} MiB), bare ${(mean(last.bare.map((b) => b.outBytes)) / last.input).toFixed(3)}`);
  }
  rows.push(`load average at the end: ${(await run('cat', ['/proc/loadavg'])).stdout.trim()}`);
  console.log('\nbench:compression (strata Starting job vs bare qemu-img convert -c, zstd, same file, same run)');
  for (const row of rows) console.log(`  ${row}`);
  console.log(`  total bench time ${secondsSince(totalT0)} s (data ${(2 * GiB) / GiB} GiB)`);
  return 0;
}

main()
  .then(async (code) => {
    await cleanUp();
    process.exit(code);
  })
  .catch(async (error: Error) => {
    console.error(`bench:compression failed: ${error.stack ?? error.message}`);
    await cleanUp();
    process.exit(1);
  });
