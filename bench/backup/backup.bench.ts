import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LIBVIRT_URI, run } from '../../test/support/libvirt/exec';
import { TestDomain } from '../../test/support/libvirt/test-domain';
import {
  assignToOffering,
  cleanUp,
  dataDomain,
  duBytes,
  Figure,
  GiB,
  log,
  makeDataFile,
  MiB,
  onCleanup,
  requireCompiledCli,
  scatteredWrites,
  secondsSince,
  SEED,
  setBenchName,
  startPlane,
  startProcess,
  stopProcess,
  strataBackup,
} from '../support/bench-kit';

/*
 * bench/backup: prints figures, asserts nothing; exits non-zero only when something breaks.
 *
 * A 4 GiB disk holding 2 GiB of data (1 GiB from a seeded PRNG, 1 GiB of repetitive text); a full backup;
 * then 1024 scattered 64 KiB writes (64 MiB) and an incremental. virtnbdbackup (Debian package) takes a full
 * and an incremental of an identical domain with identical writes in the same run; strata also takes the same
 * incremental of a 16 GiB disk with the same 2 GiB of data. strata's seconds run from the createBackup request
 * to status BackedUp in listBackups; its MiB stored is listBackups' `size`. virtnbdbackup's seconds are its
 * process' wall time, its MiB stored the bytes its run added to the output directory (`du -sb`). The writes and
 * the three incrementals are repeated STRATA_BENCH_ROUNDS times (default 5, the order of the three turning
 * each round, `sync` before each); the targets compare medians, and every figure is printed. Five rounds,
 * not three: QEMU's copy of the same 64 MiB has taken from 0.2 to 0.8 s on either disk size (on this
 * machine's storage), and with three samples a side one slow copy could move the 16/4 median ratio by half.
 *
 * Needs: the compiled tree (this file's outDir also holds apps/cli/src/main.js, and node_modules there: a symlink
 * to the repository's when the outDir is elsewhere; see the bench:backup npm script), PostgreSQL (trust auth,
 * STRATA_BENCH_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres), Redis (STRATA_BENCH_REDIS_URL,
 * default redis://127.0.0.1:6379), libvirt (qemu:///system, STRATA_TEST_LIBVIRT_URI), qemu-img, and for the
 * comparison `apt-get install -y virtnbdbackup`. About 12 GiB of free space in the temp directory.
 */


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

setBenchName('bench:backup');

/** How many times each incremental is taken (STRATA_BENCH_ROUNDS, default 5); medians are compared. */
const ROUNDS = Math.max(1, Number(process.env.STRATA_BENCH_ROUNDS ?? 5) || 5);

async function main(): Promise<number> {
  requireCompiledCli();
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

  // Sub-second incrementals are at the mercy of whatever else the machine does (the kernel writing back
  // the previous backup's pages, above all), so each incremental is taken ROUNDS times, the order of the
  // three turns every round, the page cache is flushed before each, and the medians are compared.
  const incs: { s4: (Figure & { type: string; note?: string })[]; v4: VnbdResult[]; s16: (Figure & { type: string; note?: string })[] } = { s4: [], v4: [], s16: [] };
  for (let round = 1; round <= ROUNDS; round++) {
    for (const dom of [strata4, vnbd4, strata16]) {
      if (!dom) continue;
      const w = await scatteredWrites(dom, `${SEED}/writes/${round}`);
      log(`round ${round}: 1024 x 64 KiB written to ${dom.name} (${dom.disk('vda').sizeBytes / GiB} GiB) in ${w.seconds.toFixed(1)} s`);
    }
    const takes: (() => Promise<void>)[] = [
      async () => {
        incs.s4.push(await strataBackup(plane, strata4, `inc-4g-${round}`));
        log(`round ${round}: strata incremental, 4 GiB: ${fmt(incs.s4.at(-1))} (${incs.s4.at(-1)!.note})`);
      },
      async () => {
        if (!vnbd4 || !vf || 'error' in vf) return;
        incs.v4.push(await virtnbdbackup(vnbd4, 'inc', vnbdOut, scratch));
        log(`round ${round}: virtnbdbackup incremental, 4 GiB: ${fmt(incs.v4.at(-1))}`);
      },
      async () => {
        incs.s16.push(await strataBackup(plane, strata16, `inc-16g-${round}`));
        log(`round ${round}: strata incremental, 16 GiB: ${fmt(incs.s16.at(-1))} (${incs.s16.at(-1)!.note})`);
      },
    ];
    for (let i = 0; i < takes.length; i++) {
      await run('sync', []);
      await takes[(i + round - 1) % takes.length]();
    }
  }
  const sInc4 = median(incs.s4);
  const sInc16 = median(incs.s16);
  const vi: VnbdResult | undefined = incs.v4.find((f) => 'error' in f) ?? median(incs.v4.filter((f): f is Figure => !('error' in f)));

  const vnbdName = 'virtnbdbackup';
  const rows = [
    `strata full 4 GiB: ${fmt(sFull4)} | ${vnbdName} full: ${fmt(vf)} | ratio ${ratio(sFull4, vf)} (target <= 1.0)`,
    `strata incremental 4 GiB (median of ${incs.s4.length}): ${fmt(sInc4)} | ${vnbdName} incremental (median of ${incs.v4.length}): ${fmt(vi)} | ratio ${ratio(sInc4, vi)} (target <= 0.5)`,
    `strata incremental 16 GiB (median of ${incs.s16.length}): ${fmt(sInc16)} | strata incremental 4 GiB: ${fmt(sInc4)} | ratio 16/4 ${ratio(sInc16, sInc4)} (target <= 1.3)`,
    `strata full 16 GiB (not a target): ${fmt(sFull16)}`,
    `MiB stored, strata/virtnbdbackup: full ${mibRatio(sFull4, vf)}, incremental ${mibRatio(sInc4, vi)} (not targets)`,
    `strata backup types: full 4 GiB ${sFull4.note}, incrementals 4 GiB ${incs.s4.map((f) => f.note).join(', ')}, full 16 GiB ${sFull16.note}, incrementals 16 GiB ${incs.s16.map((f) => f.note).join(', ')}`,
    `every incremental (seconds, by round): strata 4 GiB ${secondsList(incs.s4)} | virtnbdbackup 4 GiB ${secondsList(incs.v4)} | strata 16 GiB ${secondsList(incs.s16)}`,
  ];
  console.log('\nbench:backup (2 GiB of data: 1 GiB random, 1 GiB text; incremental = 1024 x 64 KiB scattered writes)');
  for (const row of rows) console.log(`  ${row}`);
  // The agent's own account of each backup (its time split into preparing, QEMU's copy and finishing).
  console.log('  strata agent, per backup:');
  for (const line of plane.agent.output().split('\n').filter((l) => / done, \d+ bytes stored in /.test(l))) console.log(`    ${line.replace(/^\S+ \S+\s+\S+ /, '')}`);
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

/** The figure with the median seconds (the lower middle one of an even count). */
function median<T extends Figure>(figures: T[]): T | undefined {
  const sorted = [...figures].sort((a, b) => a.seconds - b.seconds);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function secondsList(figures: (Figure | { error: string })[]): string {
  return figures.map((f) => ('error' in f ? 'failed' : f.seconds.toFixed(2))).join(', ') || 'n/a';
}

function mibRatio(a: Figure | undefined, b: VnbdResult | undefined): string {
  return a && b && !('error' in b) && b.bytes > 0 ? (a.bytes / b.bytes).toFixed(2) : 'n/a';
}

const d = secondsSince;

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
