import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { ApiClient } from '../support/api-client';
import { agentEnv, assignWhenListed, okCaller } from '../support/backup-fixture';
import { CompressedBackup, compressionApi, createBackupRetryingSwaps, createCompressCatalog, readStream, StoredEvent } from '../support/compression-fixture';
import { createTestDomain, run, TestDomain, useLibvirtCleanup, writePattern, writeRandom } from '../support/libvirt';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { ProcessOverlapRecorder, qemuImgConvertOf } from '../support/process-overlap';
import { startStrata, StrataProcess, until } from '../support/strata-process';

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Issue 5, point 5 (failures): too little free space fails each attempt with the reason; failed attempts
 * are retried max.job.retries times at retry.interval; an attempt past the timeout is killed with its
 * qemu-img and retried; the backup's files are untouched by every failure. The repository is a small
 * ext4 file system (loop-mounted, 256 MiB) so that minimum.free.storage can ask for more than it has.
 * The offering asks for zlib, which the compressed files then use. Side files nothing will swap in (a
 * Finalizing job out of retries, jobs cancelled by deleteBackup) do not stay on the repository.
 */
describe('compression failures: free space, retries, timeouts (real processes)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let agent: StrataProcess;
  let domain: TestDomain;
  let zoneId: string;
  let work: string;
  let repoDir: string;
  let mounted = false;
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;
  const c = compressionApi(() => api);
  const RETRY_MINUTES = 0.05; // 3 s
  const ok = okCaller(() => api);

  async function backup(): Promise<CompressedBackup> {
    const started = await createBackupRetryingSwaps(api, { virtualmachineid: domain.uuid, isolated: 'true' });
    const job = await api.waitForJob(started.jobid, 120_000);
    if (job.jobstatus !== 1) throw new Error(`backup failed: ${JSON.stringify(job.jobresult)} (agent: ${agent.output().slice(-2000)})`);
    return c.backup(started.id);
  }

  const fileOf = (b: CompressedBackup) => join(repoDir, domain.uuid, b.chainid, b.id, `${b.volumes[0].id}.qcow2`);

  async function startingEvents(backupId: string): Promise<StoredEvent[]> {
    const events = await readStream(plane.db.url, `vmBackups-${domain.uuid}`);
    return events.filter((e) => (e.data as { backupId?: string }).backupId === backupId && e.type.startsWith('Compression'));
  }

  /** Side files (complete or partial) anywhere under `dir`, relative to the repository. */
  async function sideFilesUnder(dir: string): Promise<string[]> {
    const names = existsSync(dir) ? await readdir(dir, { recursive: true }) : [];
    return names.filter((n) => /\.(zside|zpart)$/.test(n)).map((n) => relative(repoDir, join(dir, n)));
  }

  /**
   * A backup whose Starting job wrote its side file and whose Finalizing job waits: dispatch is turned off
   * (backup.compression.task.enabled=false) while the Starting job runs, slowed by the rate limit.
   */
  async function finalizingWaits(): Promise<{ b: CompressedBackup; before: string; side: string }> {
    await c.setting('backup.compression.rate.limit', 2); // ~12 MiB at 2 MiB/s
    await c.setting('backup.compression.task.enabled', true);
    const b = await backup();
    const before = await sha256(fileOf(b));
    await until(async () => (await c.jobs({ backupid: b.id, type: 'Starting' })).find((j) => j.status === 'Running'), 30_000, 'the Starting job to run', 50);
    await c.setting('backup.compression.task.enabled', false);
    const [finalizing] = await until(async () => {
      const jobs = await c.jobs({ backupid: b.id, type: 'Finalizing' });
      return jobs.length ? jobs : undefined;
    }, 60_000, `the Finalizing job of ${b.id} to be scheduled (agent: ${agent.output().slice(-1500)})`, 100);
    expect(finalizing).toMatchObject({ status: 'Scheduled', attempts: 0 });
    const side = `${fileOf(b)}.zside`;
    expect(await sideFilesUnder(dirname(side))).toEqual([relative(repoDir, side)]);
    return { b, before, side };
  }

  async function untilFailed(b: CompressedBackup, timeoutMs: number): Promise<void> {
    await until(async () => (await c.backup(b.id)).compressionstatus === 'CompressionError', timeoutMs, `backup ${b.id} to end in CompressionError (agent: ${agent.output().slice(-2000)})`, 100);
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-smallrepo-'));
    repoDir = join(work, 'mnt');
    await run('mkdir', ['-p', repoDir]);
    await run('truncate', ['-s', '256M', join(work, 'fs.img')]);
    await run('mkfs.ext4', ['-q', '-F', join(work, 'fs.img')]);
    await run('mount', ['-o', 'loop', join(work, 'fs.img'), repoDir]);
    mounted = true;
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createCompressCatalog(api, 'failures-zone', { repoDir, library: 'zlib' });
    zoneId = catalog.zoneId;
    agent = startStrata(['agent'], agentEnv(plane, hostName, 'failures-zone'));
    domain = await createTestDomain({ disks: [{ sizeMiB: 32 }], running: true });
    await assignWhenListed(api, domain.uuid, catalog.offeringId, () => agent.output());
    await writeRandom(domain, 'vda', { offset: 0, length: 8 << 20, seed: 'failures' });
    await writePattern(domain, 'vda', { offset: 16 << 20, length: 4 << 20, pattern: 0x77 });
    await c.setting('backup.compression.max.job.retries', 2);
    await c.setting('backup.compression.retry.interval', RETRY_MINUTES);
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await domain?.destroy();
    await plane?.stop();
    if (mounted) await run('umount', [repoDir], { allowFailure: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('too little free space: every attempt fails with the reason, retried max.job.retries times at the retry interval; the file is untouched', async () => {
    // About 12 MiB of backup x 100 is far more than the 256 MiB file system has.
    await c.setting('backup.compression.minimum.free.storage', 100, zoneId);
    const b = await backup();
    const before = await sha256(fileOf(b));
    // While it waits for a retry, the job is listed as scheduled, in the future.
    const waiting = await until(async () => (await c.jobs({ backupid: b.id, scheduled: 'true' })).find((j) => j.attempts >= 1), 20_000, 'the job to wait for a retry', 50);
    expect(Date.parse(waiting.scheduleddate.replace(/([+-]\d{2})(\d{2})$/, '$1:$2'))).toBeGreaterThan(Date.now() - 1000);
    await untilFailed(b, 60_000);

    const events = await startingEvents(b.id);
    const starts = events.filter((e) => e.type === 'CompressionStarted');
    const failures = events.filter((e) => e.type === 'CompressionAttemptFailed');
    expect(starts.map((e) => e.data.attempt)).toEqual([1, 2, 3]); // 1 + max.job.retries
    expect(failures.map((e) => e.data.retryAt === null)).toEqual([false, false, true]);
    expect(events.filter((e) => e.type === 'CompressionFailed')).toHaveLength(1);
    for (const f of failures) expect(f.data.reason).toMatch(/not enough free space on the repository: \d+ bytes free, \d+ needed \(backup\.compression\.minimum\.free\.storage 100 x backup size \d+ bytes\)/);
    // Each retry starts no sooner than the interval after the failure, and not much later (the slack is for
    // the scheduler's 1 s rounds on a loaded machine).
    const interval = RETRY_MINUTES * 60_000;
    for (let i = 1; i < starts.length; i++) {
      const gap = Date.parse(starts[i].data.startedAt as string) - Date.parse(failures[i - 1].data.failedAt as string);
      expect({ retry: i, gapAtLeastInterval: gap >= interval, gapMs: gap }).toMatchObject({ retry: i, gapAtLeastInterval: true });
      expect(gap).toBeLessThan(interval + 5000);
    }
    const [job] = await c.jobs({ backupid: b.id });
    expect(job).toMatchObject({ type: 'Starting', status: 'Failed', attempts: 3 });
    expect(job.lasterror).toContain('backup.compression.minimum.free.storage');
    expect(job.removed).toBeDefined();
    expect(await c.backup(b.id)).toMatchObject({ compressionstatus: 'CompressionError', size: b.size, uncompressedsize: b.size });
    expect(await sha256(fileOf(b))).toBe(before);
    expect((await readdir(join(fileOf(b), '..'))).filter((n) => /\.(zside|zpart)$/.test(n))).toEqual([]);
  });

  it('an attempt past backup.compression.timeout is killed with its qemu-img, counts as failed, and is retried; the file is untouched', async () => {
    await c.setting('backup.compression.minimum.free.storage', 1, zoneId);
    await c.setting('backup.compression.max.job.retries', 1);
    await c.setting('backup.compression.timeout', 2);
    await c.setting('backup.compression.rate.limit', 1); // ~12 MiB at 1 MiB/s: far longer than 2 s
    const recorder = new ProcessOverlapRecorder(qemuImgConvertOf(repoDir));
    recorder.start();
    try {
      const b = await backup();
      const before = await sha256(fileOf(b));
      await untilFailed(b, 60_000);
      await new Promise((r) => setTimeout(r, 500));
      await recorder.stop();

      const events = await startingEvents(b.id);
      const failures = events.filter((e) => e.type === 'CompressionAttemptFailed');
      expect(events.filter((e) => e.type === 'CompressionStarted').map((e) => e.data.attempt)).toEqual([1, 2]);
      for (const f of failures) expect(f.data.reason).toBe('the attempt exceeded backup.compression.timeout (2 s); qemu-img was killed');
      // Two qemu-img processes, one per attempt, each killed about 2 s in (unkilled, one would run about 12 s;
      // the slack is for a loaded machine); none left.
      const procs = [...recorder.processes.values()].filter((p) => p.argv.some((a) => a.includes(b.id)));
      expect(procs).toHaveLength(2);
      for (const p of procs) expect(p.lastSeen - p.firstSeen).toBeLessThan(5000);
      expect(recorder.running()).toEqual([]);
      expect(recorder.maxConcurrent).toBe(1);
      expect((await c.jobs({ backupid: b.id }))[0]).toMatchObject({ status: 'Failed', attempts: 2, lasterror: expect.stringContaining('backup.compression.timeout') });
      expect(await sha256(fileOf(b))).toBe(before);
      expect((await readdir(join(fileOf(b), '..'))).filter((n) => /\.(zside|zpart)$/.test(n))).toEqual([]);
    } finally {
      await recorder.stop();
    }
  });

  it('with room and time it compresses, with zlib as the offering asks', async () => {
    await c.setting('backup.compression.timeout', 600);
    await c.setting('backup.compression.rate.limit', 0);
    const b = await backup();
    const [done] = await c.untilCompressed([b.id], 120_000, () => agent.output().slice(-2000));
    expect(done.size).toBeLessThan(done.uncompressedsize);
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', fileOf(b)])).stdout) as { 'format-specific': { data: { 'compression-type': string } } };
    expect(info['format-specific'].data['compression-type']).toBe('zlib');
  });

  it('a Finalizing job out of retries leaves no side file: a host removes it; the backup keeps its original file', async () => {
    await c.setting('backup.compression.max.job.retries', 1);
    const { b, before, side } = await finalizingWaits();
    // The same bytes under a new inode: not the file the Starting job wrote, so every swap attempt refuses it.
    await copyFile(side, `${side}.copy`);
    await rename(`${side}.copy`, side);
    await c.setting('backup.compression.rate.limit', 0);
    await c.setting('backup.compression.task.enabled', true);
    await untilFailed(b, 60_000);
    const [finalizing] = await c.jobs({ backupid: b.id, type: 'Finalizing' });
    expect(finalizing).toMatchObject({ status: 'Failed', attempts: 2, lasterror: expect.stringContaining('is not the one the Starting job wrote') });
    await until(async () => (await sideFilesUnder(dirname(side))).length === 0, 20_000, `the side file of ${b.id} to be removed (agent: ${agent.output().slice(-1500)})`, 100);
    // The host removes the file before its report becomes an event: wait for the event, then check it.
    const discarded = await until(async () => {
      const events = (await startingEvents(b.id)).filter((e) => e.type === 'CompressionSideFilesDiscarded');
      return events.length ? events : undefined;
    }, 20_000, `the discard of ${b.id}'s side file to be recorded`, 100);
    expect(discarded).toEqual([expect.objectContaining({ data: expect.objectContaining({ jobId: finalizing.id, type: 'Finalizing', removed: [relative(repoDir, side)] }) })]);
    expect(await sha256(fileOf(b))).toBe(before);
    expect(await c.backup(b.id)).toMatchObject({ compressionstatus: 'CompressionError', size: b.size });
  });

  it('deleting a backup cancels its pending compression jobs: none runs afterwards, and no side file stays on the repository', async () => {
    await c.setting('backup.compression.max.job.retries', 2);
    const { b: first } = await finalizingWaits(); // a Finalizing job waits, with its side file
    const second = await backup(); // its Starting job waits (dispatch is off)
    await until(async () => (await c.jobs({ backupid: second.id })).find((j) => j.type === 'Starting' && j.status === 'Scheduled'), 20_000, 'the Starting job of the second backup');
    const recorder = new ProcessOverlapRecorder((argv) => argv.some((a) => a === 'qemu-img' || a.endsWith('/qemu-img')) && argv.some((a) => a.includes(first.id) || a.includes(second.id)));
    recorder.start();
    const watchedFrom = Date.now();
    try {
      for (const b of [second, first]) {
        const r = await ok('deleteBackup', { id: b.id });
        const job = await api.waitForJob(r.jobid as string, 120_000);
        if (job.jobstatus !== 1) throw new Error(`deleteBackup ${b.id}: ${JSON.stringify(job.jobresult)} (agent: ${agent.output().slice(-2000)})`);
      }
      expect(await c.jobs({ backupid: first.id, type: 'Finalizing' })).toEqual([
        expect.objectContaining({ status: 'Cancelled', attempts: 0, removed: expect.any(String), lasterror: expect.stringContaining('cancelled: backup deleted') }),
      ]);
      expect(await c.jobs({ backupid: second.id })).toEqual([expect.objectContaining({ type: 'Starting', status: 'Cancelled', attempts: 0, removed: expect.any(String) })]);
      expect(await c.jobs()).toEqual([]); // nothing scheduled or running is left

      // Dispatch on again: a new backup is compressed, the cancelled jobs never start.
      await c.setting('backup.compression.rate.limit', 0);
      await c.setting('backup.compression.task.enabled', true);
      const third = await backup();
      await c.untilCompressed([third.id], 60_000, () => agent.output().slice(-2000));
      await new Promise((r) => setTimeout(r, 1500)); // a few more scheduler rounds
      await recorder.stop();
      // The recorder really watched: at least two samples a second (it aims at fifty; a loaded machine slows
      // each scan of /proc). The events below are the proof that no attempt started.
      const watchedSeconds = (Date.now() - watchedFrom) / 1000;
      expect({ samples: recorder.samples, enough: recorder.samples >= 2 * watchedSeconds, watchedSeconds }).toMatchObject({ enough: true });
      expect([...recorder.processes.values()].map((p) => p.argv.join(' '))).toEqual([]);
      for (const b of [first, second]) {
        const events = await startingEvents(b.id);
        const cancelledAt = events.findIndex((e) => e.type === 'CompressionCancelled');
        expect(cancelledAt).toBeGreaterThanOrEqual(0);
        expect(events.slice(cancelledAt).filter((e) => e.type === 'CompressionStarted')).toEqual([]);
      }
      // The deleted backups' directories went, the waiting side file with them; none is left anywhere.
      expect(existsSync(dirname(fileOf(first)))).toBe(false);
      expect(existsSync(dirname(fileOf(second)))).toBe(false);
      expect(await sideFilesUnder(join(repoDir, domain.uuid))).toEqual([]);
    } finally {
      await recorder.stop();
    }
  });
});
