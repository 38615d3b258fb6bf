import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LIBVIRT_URI, run, virsh } from '../../test/support/libvirt/exec';
import { TestDomain } from '../../test/support/libvirt/test-domain';
import {
  assignToOffering,
  cleanUp,
  dataDomain,
  duBytes,
  Figure,
  log,
  makeDataFile,
  median,
  MiB,
  okFor,
  onCleanup,
  Plane,
  requireCompiledCli,
  scatteredWrites,
  secondsSince,
  SEED,
  setBenchName,
  startPlane,
  startProcess,
  stopProcess,
  strataBackup,
  until,
} from '../support/bench-kit';

/*
 * bench/restore: prints figures, asserts nothing; exits non-zero only when something breaks.
 *
 * The 4 GiB disk holding 2 GiB of data of bench/backup, a full backup, 1024 scattered 64 KiB writes and an
 * incremental; then a restore of the VM to that incremental (the full plus the incremental flattened into
 * the VM's disk). virtnbdbackup takes the same two backups of an identical domain in the same run and
 * `virtnbdrestore` restores them into a directory. Then quick restores of the 4 GiB VM and of a 16 GiB VM
 * with the same data: seconds from the restoreBackup request until the VM runs (the job's success, which
 * the agent reports once libvirt started the domain), and the background consolidation's time. Each size is
 * quick-restored STRATA_BENCH_ROUNDS times (default 5, the order turning each round, `sync` before each):
 * a single sample of about a second on 2 cores swings by a quarter either way, so the 16/4 target compares
 * medians.
 *
 * Needs what bench/backup needs (see bench/support/bench-kit.ts), and `apt-get install -y virtnbdbackup`
 * (which brings virtnbdrestore) for the comparison. About 16 GiB free in the temp directory.
 */

setBenchName('bench:restore');
const RESTORE_TIMEOUT_MS = 15 * 60_000;
/** How many quick restores of each size (STRATA_BENCH_ROUNDS, default 5); medians are compared. */
const ROUNDS = Math.max(1, Number(process.env.STRATA_BENCH_ROUNDS ?? 5) || 5);
const d = secondsSince;

async function stopAndWaitListed(plane: Plane, domain: TestDomain): Promise<void> {
  await domain.stop();
  const ok = okFor(plane.api);
  await until(
    async () => ((await ok('listVirtualMachines', { id: domain.uuid })).virtualmachine as { state: string }[])[0]?.state === 'Stopped',
    30_000,
    () => `${domain.name} to be listed Stopped`,
    50,
  );
}

/** Seconds from t0 until libvirt says the domain runs (domstate polled back to back). */
async function runningAfter(domain: TestDomain, t0: number): Promise<number> {
  // Every 10 ms rather than back to back: each poll is a virsh process, which would compete on 2 cores with
  // the agent being measured.
  await until(async () => (await virsh(['domstate', domain.name])).stdout.trim() === 'running', RESTORE_TIMEOUT_MS, () => `${domain.name} to run`, 10);
  return (performance.now() - t0) / 1000;
}

/**
 * restoreBackup, timed from the request to the job's success (and, for a quick restore, to the domain
 * running); returns the consolidation job when quick.
 */
async function strataRestore(plane: Plane, domain: TestDomain, backupId: string, quick: boolean): Promise<{ seconds: number; runningSeconds: number; consolidationJobId: string | null }> {
  const ok = okFor(plane.api);
  const t0 = performance.now();
  const running = quick ? runningAfter(domain, t0) : Promise.resolve(NaN);
  const started = await ok('restoreBackup', { id: backupId, quickrestore: String(quick) });
  const job = await until(
    async () => {
      const r = await plane.api.call('queryAsyncJobResult', { jobid: started.jobid as string });
      const j = r.body.queryasyncjobresultresponse;
      if (j?.jobstatus === 2) throw new Error(`restore of ${backupId} failed: ${JSON.stringify(j.jobresult)} (agent: ${plane.agent.output().slice(-2000)})`);
      return j?.jobstatus === 1 ? j : undefined;
    },
    RESTORE_TIMEOUT_MS,
    () => `the restore of ${backupId}`,
    20,
  );
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, runningSeconds: await running, consolidationJobId: (job.jobresult as { consolidationjobid?: string }).consolidationjobid ?? null };
}

async function waitJob(plane: Plane, jobId: string): Promise<number> {
  const t0 = performance.now();
  await until(
    async () => {
      const j = (await plane.api.call('queryAsyncJobResult', { jobid: jobId })).body.queryasyncjobresultresponse;
      if (j?.jobstatus === 2) throw new Error(`job ${jobId} failed: ${JSON.stringify(j.jobresult)}`);
      return j?.jobstatus === 1;
    },
    RESTORE_TIMEOUT_MS,
    () => `job ${jobId}`,
    100,
  );
  return (performance.now() - t0) / 1000;
}

async function vnbd(command: string, args: string[]): Promise<Figure | { error: string }> {
  const t0 = performance.now();
  const p = startProcess(command, args, { ...process.env });
  onCleanup(command, () => stopProcess(p));
  const code = await p.exited;
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0) return { error: `${command} ${args.join(' ')} exited ${code}: ${p.output().trim().split('\n').slice(-6).join(' | ')}` };
  return { seconds, bytes: 0 };
}

async function available(): Promise<string | null> {
  const r = await run('virtnbdrestore', ['--version'], { allowFailure: true }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
  return r.code === 0 ? null : 'virtnbdrestore is not usable here; install it with: apt-get install -y virtnbdbackup';
}

async function main(): Promise<number> {
  requireCompiledCli();
  const totalT0 = performance.now();
  const missing = await available();
  if (missing) log(missing);
  const work = await mkdtemp(join(tmpdir(), 'strata-bench-restore-'));
  onCleanup(`temp dir ${work}`, () => rm(work, { recursive: true, force: true }));
  log(`work dir ${work}; libvirt ${LIBVIRT_URI}`);

  let t = performance.now();
  const raw = join(work, 'data.raw');
  await makeDataFile(raw);
  const base = join(work, 'data.qcow2');
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, base], { timeoutMs: 600_000 });
  await rm(raw);
  log(`data ready (${d(t)} s)`);
  const plane = await startPlane(work, { allowquickrestore: 'true' });
  const strata4 = await dataDomain(base, 4);
  const vnbd4 = missing ? undefined : await dataDomain(base, 4);
  const strata16 = await dataDomain(base, 16);
  await rm(base);
  await assignToOffering(plane, strata4);
  await assignToOffering(plane, strata16);

  log('backups: full, 1024 x 64 KiB writes, incremental (strata 4 GiB and 16 GiB, virtnbdbackup 4 GiB)');
  t = performance.now();
  const vnbdOut = join(work, 'virtnbdbackup');
  const scratch = join(work, 'scratch');
  await mkdir(scratch);
  const vnbdArgs = (domain: TestDomain, level: string) => ['-d', domain.name, '-l', level, '-o', vnbdOut, '-S', scratch, '-n', ...(LIBVIRT_URI !== 'qemu:///system' ? ['-U', LIBVIRT_URI] : [])];
  await strataBackup(plane, strata4, 'full-4g');
  await strataBackup(plane, strata16, 'full-16g');
  if (vnbd4) {
    const f = await vnbd('virtnbdbackup', vnbdArgs(vnbd4, 'full'));
    if ('error' in f) throw new Error(f.error);
  }
  for (const dom of [strata4, vnbd4, strata16]) if (dom) await scatteredWrites(dom, `${SEED}/writes`);
  const inc4 = await strataBackup(plane, strata4, 'inc-4g');
  const inc16 = await strataBackup(plane, strata16, 'inc-16g');
  if (vnbd4) {
    const i = await vnbd('virtnbdbackup', vnbdArgs(vnbd4, 'inc'));
    if ('error' in i) throw new Error(i.error);
  }
  log(`backups done (${d(t)} s): strata incrementals ${inc4.note}, ${inc16.note}`);
  const ok = okFor(plane.api);
  const latest = async (domain: TestDomain) => {
    const list = (await ok('listBackups', { virtualmachineid: domain.uuid })).backup as { id: string; name: string }[];
    return list.find((b) => b.name.startsWith('inc-'))!.id;
  };
  const inc4Id = await latest(strata4);
  const inc16Id = await latest(strata16);

  await stopAndWaitListed(plane, strata4);
  await stopAndWaitListed(plane, strata16);
  if (vnbd4) await vnbd4.stop();

  log('strata restore (full + incremental into the 4 GiB VM)');
  const plain = await strataRestore(plane, strata4, inc4Id, false);
  log(`  ${plain.seconds.toFixed(2)} s`);
  let vr: Figure | { error: string } | undefined;
  let identical = 'n/a';
  if (vnbd4) {
    log('virtnbdrestore (full + incremental into a directory)');
    const restoreOut = join(work, 'virtnbdrestore');
    vr = await vnbd('virtnbdrestore', ['-i', vnbdOut, '-o', restoreOut, ...(LIBVIRT_URI !== 'qemu:///system' ? ['-U', LIBVIRT_URI] : [])]);
    if (!('error' in vr)) {
      vr.bytes = await duBytes(restoreOut);
      const files = (await readdir(restoreOut)).filter((f) => /vda/.test(f) && !f.endsWith('.xml'));
      if (files.length) {
        const cmp = await run('qemu-img', ['compare', '-F', 'qcow2', strata4.disk('vda').path, join(restoreOut, files[0])], { allowFailure: true, timeoutMs: 600_000 });
        identical = cmp.code === 0 ? 'identical' : `differ: ${cmp.stdout.trim()}`;
      }
    }
    log(`  ${'error' in vr ? vr.error : `${vr.seconds.toFixed(2)} s`}`);
  }

  // Quick restores: ROUNDS of each size, the order turning every round, each VM stopped again and its
  // consolidation awaited before the next; the target compares medians.
  const quick: Record<'4 GiB' | '16 GiB', { running: number; job: number; consolidation: number }[]> = { '4 GiB': [], '16 GiB': [] };
  const sizes = [
    ['4 GiB', strata4, inc4Id],
    ['16 GiB', strata16, inc16Id],
  ] as const;
  for (let round = 1; round <= ROUNDS; round++) {
    for (let i = 0; i < sizes.length; i++) {
      const [size, domain, backupId] = sizes[(i + round - 1) % sizes.length];
      if ((await virsh(['domstate', domain.name])).stdout.trim() !== 'shut off') await stopAndWaitListed(plane, domain);
      await run('sync', []);
      const q = await strataRestore(plane, domain, backupId, true);
      const consolidation = q.consolidationJobId ? await waitJob(plane, q.consolidationJobId) : NaN;
      quick[size].push({ running: q.runningSeconds, job: q.seconds, consolidation });
      log(`round ${round}: strata quick restore, ${size}: running after ${q.runningSeconds.toFixed(2)} s, job done after ${q.seconds.toFixed(2)} s; consolidated ${consolidation.toFixed(1)} s later`);
    }
  }
  const quickMedian = (size: '4 GiB' | '16 GiB') => ({ running: median(quick[size].map((q) => q.running)), job: median(quick[size].map((q) => q.job)), consolidation: median(quick[size].map((q) => q.consolidation)) });
  const quick4 = quickMedian('4 GiB');
  const quick16 = quickMedian('16 GiB');

  const vrText = !vr ? `n/a (${missing})` : 'error' in vr ? `failed: ${vr.error}` : `${vr.seconds.toFixed(2)} s (${(vr.bytes / MiB).toFixed(0)} MiB written)`;
  const ratio = vr && !('error' in vr) && vr.seconds > 0 ? (plain.seconds / vr.seconds).toFixed(2) : 'n/a';
  console.log('\nbench:restore (2 GiB of data: 1 GiB random, 1 GiB text; chain = full + incremental of 1024 x 64 KiB writes)');
  console.log(`  strata restore 4 GiB: ${plain.seconds.toFixed(2)} s | virtnbdrestore: ${vrText} | ratio ${ratio} (target <= 0.5) | content ${identical}`);
  const load = (await run('cat', ['/proc/loadavg'])).stdout.split(' ').slice(0, 3).join(' ');
  for (const [size, q] of [['4 GiB', quick4], ['16 GiB', quick16]] as const) {
    console.log(
      `  strata quick restore ${size} (median of ${quick[size].length}): domain running ${q.running.toFixed(2)} s after the request (target < 2 s); job done ${q.job.toFixed(2)} s; consolidation ${q.consolidation.toFixed(1)} s (not a target)`,
    );
  }
  console.log(`  quick restore to running 16 GiB / 4 GiB (medians): ${(quick16.running / quick4.running).toFixed(2)} (target <= 1.2)`);
  console.log(`  every quick restore to running (seconds, by round): 4 GiB ${quick['4 GiB'].map((q) => q.running.toFixed(2)).join(', ')} | 16 GiB ${quick['16 GiB'].map((q) => q.running.toFixed(2)).join(', ')}`);
  console.log(`  load average at the end: ${load} (2 cores)`);
  console.log(`  total bench time ${d(totalT0)} s`);
  return vr && 'error' in vr ? 1 : 0;
}

main()
  .then(async (code) => {
    await cleanUp();
    process.exit(code);
  })
  .catch(async (error: Error) => {
    console.error(`bench:restore failed: ${error.stack ?? error.message}`);
    await cleanUp();
    process.exit(1);
  });
