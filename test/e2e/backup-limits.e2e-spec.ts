import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { useLibvirtCleanup, virsh, writePattern, writeScattered } from '../support/libvirt';
import { BackupRow, completeBackup, takeBackup, useBackupRig } from '../support/backup-fixture';
import { until } from '../support/strata-process';

interface Backup extends BackupRow {
  failure?: string;
}

interface JobSample {
  jobstatus: number;
  jobprogress: number;
  bytesdone?: number;
  bytestotal?: number;
}

const GiB = 1024;

/**
 * Progress, the bandwidth limit and knib.timeout (issue 3, point 6). A backup of a test disk ends in well
 * under a second, so the VM gets a large sparse disk (256 GiB, a few MiB of data): a full backup copies
 * its zeroes too, and `nas.backup.bandwidth.limit.mbps` holds it to a speed at which it runs long enough
 * to watch. The limit is set on libvirt's block jobs right after backup-begin; the zeroes copied in
 * those first milliseconds are why the disk is that large.
 */
describe('backup progress, bandwidth limit and knib.timeout (real libvirt, real processes)', () => {
  useLibvirtCleanup();
  const rig = useBackupRig({ zoneName: 'limits-zone', disks: [{ sizeMiB: 256 * GiB }, { sizeMiB: 16 }] });
  const { ok } = rig;
  let full: Backup;

  const backupOf = async (id: string) => ((await ok('listBackups', { id })).backup as Backup[])[0];
  const setting = (name: string, value: string) => ok('updateConfiguration', { name, value, zoneid: rig.catalog.zoneId });
  const jobSample = async (jobid: string) => (await rig.api.call('queryAsyncJobResult', { jobid })).body.queryasyncjobresultresponse as JobSample;
  const checkpoints = async () => (await virsh(['checkpoint-list', rig.domain.name, '--name'])).stdout.split('\n').map((l) => l.trim()).filter(Boolean).sort();
  /** The speed limit of the disk's running block job, or null when none runs. */
  const blockJobBandwidth = async (target: string) => {
    const out = (await virsh(['blockjob', rig.domain.name, target, '--info', '--raw', '--bytes'])).stdout;
    const m = /bandwidth=(\d+)/.exec(out);
    return m ? Number(m[1]) : null;
  };
  const repoFiles = async () => (await readdir(join(rig.catalog.repoDir, rig.domain.uuid))).sort();

  it('reports growing progress while a backup runs, holds it to the zone bandwidth limit, and the result is exact', async () => {
    const mbps = 40_000; // 5 GB/s of zeroes: a 256 GiB disk moves about 2 % a second
    await setting('nas.backup.bandwidth.limit.mbps', String(mbps));
    await writePattern(rig.domain, 'vda', { offset: 0, length: 4 << 20, pattern: 0x71 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vda', { offset: 200 * GiB * 1024 * 1024, length: 4 << 20, pattern: 0x72 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vdb', { offset: 0, length: 2 << 20, pattern: 0x73 }, { expected: rig.expected });
    await rig.expected.snapshot('l1');
    const started = await ok('createBackup', { virtualmachineid: rig.domain.uuid, name: 'l1' });
    const jobid = started.jobid as string;

    // The agent sets the limit on the big disk's block job (all of it, once the small disk is done).
    await until(async () => (await blockJobBandwidth('vda')) === mbps * 125_000, 30_000, `vda's block job to be limited to ${mbps} Mbit/s (agent: ${rig.agent.output().slice(-2000)})`, 100);

    const samples: JobSample[] = [];
    const rising = await until(
      async () => {
        const s = await jobSample(jobid);
        expect(s.jobstatus).toBe(0); // still running: the limit holds it
        samples.push(s);
        const first = samples.find((x) => x.jobprogress > 0);
        return first && s.jobprogress > first.jobprogress ? [first, s] : null;
      },
      60_000,
      `jobprogress to grow (samples: ${JSON.stringify(samples.slice(-5))})`,
      100,
    );
    const [before, after] = rising;
    expect(before.jobprogress).toBeGreaterThan(0);
    expect(after.jobprogress).toBeLessThan(100);
    expect(after.bytesdone).toBeGreaterThan(before.bytesdone!);
    expect(after.bytestotal).toBe((256 * GiB + 16) * 1024 * 1024);

    // Lift the limit on the running job so that the test need not wait for 256 GiB at 5 GB/s.
    await virsh(['blockjob', rig.domain.name, 'vda', '--bandwidth', '0', '--bytes'], { allowFailure: true });
    const { backup, job } = await completeBackup<Backup>(rig, { id: started.id as string, jobid }, 'l1');
    expect(job.jobprogress).toBe(100);
    full = backup;
    expect(full).toMatchObject({ type: 'FULL', status: 'BackedUp' });
  });

  it('aborts a backup that runs past knib.timeout, leaves nothing behind, and the next backup is exact', async () => {
    await setting('nas.backup.bandwidth.limit.mbps', '800'); // 100 MB/s: hours for 256 GiB
    await setting('knib.timeout', '2');
    const checkpointsBefore = await checkpoints();
    const filesBefore = await repoFiles();
    await writeScattered(rig.domain, 'vda', { seed: 'limits1', count: 8 }, { expected: rig.expected });

    const startedAt = Date.now();
    // Isolated: a full, which the limit keeps running far longer than the timeout.
    const started = await ok('createBackup', { virtualmachineid: rig.domain.uuid, name: 'too-slow', isolated: 'true' });
    const job = await rig.api.waitForJob(started.jobid as string, 120_000);
    expect(job.jobstatus).toBe(2);
    expect(job.jobresult.errortext).toContain('knib.timeout');
    expect(job.jobresult.errortext).toContain('2 s');
    expect(Date.now() - startedAt).toBeLessThan(60_000);
    const failed = await backupOf(started.id as string);
    expect(['Failed', 'Error']).toContain(failed.status);
    expect(failed.failure).toContain('knib.timeout');

    // No libvirt job left running, no new checkpoint, no partial files.
    expect((await virsh(['domjobinfo', rig.domain.name, '--rawstats'])).stdout).toMatch(/^Job type: 0\s*$/m);
    expect(await blockJobBandwidth('vda')).toBeNull();
    expect(await checkpoints()).toEqual(checkpointsBefore);
    expect(await repoFiles()).toEqual(filesBefore);

    // The chain goes on: the next backup is an incremental from the full, and exact.
    await setting('knib.timeout', '43200');
    await setting('nas.backup.bandwidth.limit.mbps', '0');
    await writeScattered(rig.domain, 'vdb', { seed: 'limits2', count: 4 }, { expected: rig.expected });
    const inc = await takeBackup<Backup>(rig, 'l2');
    expect(inc).toMatchObject({ type: 'INCREMENTAL', parentid: full.id, status: 'BackedUp' });
  });
});
