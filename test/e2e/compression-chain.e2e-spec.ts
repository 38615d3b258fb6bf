import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../support/api-client';
import { agentEnv, assignWhenListed, okCaller } from '../support/backup-fixture';
import { chainSafetyViolations, CompressedBackup, compressionApi, createBackupRetryingSwaps, createCompressCatalog, readStream } from '../support/compression-fixture';
import { createTestDomain, ExpectedDisks, run, TestDomain, useLibvirtCleanup, writePattern, writeScattered } from '../support/libvirt';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { startStrata, StrataProcess } from '../support/strata-process';

/**
 * Issue 5, point 5 (content): a compressed chain restores bit-identical. A two-disk VM is backed up (full,
 * incrementals of the running VM, one of the stopped VM) on an offering with compress=true; every backup
 * is compressed while later backups run. Then each backup's top file, read through its (compressed)
 * chain, equals the disks as they were when it was taken, flattened to raw (what a restore does) and with
 * `qemu-img compare`; incrementals kept their relative backing file and hold only their own clusters;
 * no Finalizing swap happened while a backup of the VM ran, and no backup started mid-swap.
 */
describe('compression of a backup chain (real libvirt, real processes)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let agent: StrataProcess;
  let domain: TestDomain;
  let expected: ExpectedDisks;
  let repoDir: string;
  let scratch: string;
  let volumeIds: Record<string, string>;
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;
  const ok = okCaller(() => api);
  const c = compressionApi(() => api);
  const taken: { label: string; backup: CompressedBackup; uncompressed: number }[] = [];

  async function backup(label: string, params: Record<string, string> = {}): Promise<CompressedBackup> {
    await expected.snapshot(label);
    const started = await createBackupRetryingSwaps(api, { virtualmachineid: domain.uuid, name: label, ...params });
    const job = await api.waitForJob(started.jobid, 120_000);
    if (job.jobstatus !== 1) throw new Error(`backup ${label} failed: ${JSON.stringify(job.jobresult)} (agent: ${agent.output().slice(-2000)})`);
    const b = await c.backup(started.id);
    expect(b.status).toBe('BackedUp');
    taken.push({ label, backup: b, uncompressed: b.size });
    return b;
  }

  const topFile = (b: CompressedBackup, target: string) => join(repoDir, domain.uuid, b.chainid, b.id, `${volumeIds[target]}.qcow2`);

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createCompressCatalog(api, 'compress-zone', { chainSize: 8 });
    repoDir = catalog.repoDir;
    scratch = await mkdtemp(join(tmpdir(), 'strata-flatten-'));
    agent = startStrata(['agent'], agentEnv(plane, hostName, 'compress-zone'));
    domain = await createTestDomain({ disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }], running: true });
    expected = await ExpectedDisks.forDomain(domain);
    volumeIds = await assignWhenListed(api, domain.uuid, catalog.offeringId, () => agent.output());
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await domain?.destroy();
    await plane?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('compresses every backup of a chain while later backups run, and each restores bit-identical to the disks when it was taken', async () => {
    // Compressible data (patterns) in the full, random blocks in the incrementals.
    await writePattern(domain, 'vda', { offset: 0, length: 8 << 20, pattern: 0x11 }, { expected });
    await writePattern(domain, 'vdb', { offset: 1 << 20, length: 4 << 20, pattern: 0x22 }, { expected });
    const full = await backup('b1');
    await writeScattered(domain, 'vda', { seed: 'c-inc1', count: 16 }, { expected });
    await writePattern(domain, 'vdb', { offset: 8 << 20, length: 2 << 20, pattern: 0x33 }, { expected });
    await backup('b2');
    await writeScattered(domain, 'vda', { seed: 'c-inc2', count: 8 }, { expected });
    await writePattern(domain, 'vda', { offset: 20 << 20, length: 1 << 20, pattern: 0x44 }, { expected });
    await backup('b3');
    await domain.stop();
    await writePattern(domain, 'vdb', { offset: 16 << 20, length: 1 << 20, pattern: 0x55 }, { expected });
    await backup('b4');
    await domain.start();
    await writeScattered(domain, 'vdb', { seed: 'c-inc4', count: 8 }, { expected });
    await backup('b5');

    const ids = taken.map((t) => t.backup.id);
    const compressed = await c.untilCompressed(ids, 240_000, () => `(agent: ${agent.output().slice(-3000)})`);
    expect(taken.map((t) => t.backup.type)).toEqual(['FULL', 'INCREMENTAL', 'INCREMENTAL', 'INCREMENTAL', 'INCREMENTAL']);

    for (const [i, { label, backup: before, uncompressed }] of taken.entries()) {
      const after = compressed[i];
      // size becomes the compressed size; uncompressedsize keeps the original.
      expect({ label, compressionstatus: after.compressionstatus, uncompressedsize: after.uncompressedsize }).toEqual({ label, compressionstatus: 'Compressed', uncompressedsize: uncompressed });
      expect(after.size).toBeGreaterThan(0);
      const dir = join(repoDir, domain.uuid, before.chainid, before.id);
      for (const target of ['vda', 'vdb']) {
        const top = topFile(before, target);
        const info = JSON.parse((await run('qemu-img', ['info', '--output=json', top])).stdout) as { 'backing-filename'?: string; 'format-specific': { data: { 'compression-type': string } } };
        expect({ label, target, type: info['format-specific'].data['compression-type'] }).toEqual({ label, target, type: 'zstd' });
        // The same backing file, by the same relative name.
        expect({ label, target, backing: info['backing-filename'] ?? null }).toEqual({ label, target, backing: before.parentid ? `../${before.parentid}/${volumeIds[target]}.qcow2` : null });
        // Read through the compressed chain: the disk as it was.
        expect({ label, target, ...(await expected.get(target).compareWith(top, label, { format: 'qcow2' })) }).toMatchObject({ equal: true });
        // Flattened to raw, as a restore does: byte for byte the same.
        const flat = join(scratch, `${label}-${target}.raw`);
        await run('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', top, flat], { timeoutMs: 120_000 });
        const cmp = await run('cmp', ['-s', flat, expected.get(target).snapshotPath(label)], { allowFailure: true });
        expect({ label, target, identical: cmp.code === 0 }).toEqual({ label, target, identical: true });
        await rm(flat, { force: true });
      }
      // No side file is left; the manifest records the compression.
      expect((await readdir(dir)).filter((n) => /\.(zside|zpart)$/.test(n))).toEqual([]);
      const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { compression?: { type: string; volumes: unknown[] } };
      expect(manifest.compression).toMatchObject({ type: 'zstd' });
      expect(manifest.compression!.volumes).toHaveLength(2);
    }
    // The full's 12 MiB of patterns shrink to almost nothing.
    expect(compressed[0].size).toBeLessThan(full.size / 4);
    // An incremental compressed with its backing file holds only its own clusters, not the chain's.
    const inc = compressed[1];
    expect(inc.size).toBeLessThan(compressed[0].uncompressedsize);
    const map = JSON.parse((await run('qemu-img', ['map', '--output=json', topFile(taken[1].backup, 'vda')])).stdout) as { depth: number; data: boolean; length: number }[];
    const ownData = map.filter((m) => m.depth === 0 && m.data).reduce((n, m) => n + m.length, 0);
    expect(ownData).toBeLessThanOrEqual(16 * 65536);

    // Chain safety on the VM's whole stream.
    const events = await readStream(plane.db.url, `vmBackups-${domain.uuid}`);
    const safety = chainSafetyViolations(events);
    expect(safety.violations).toEqual([]);
    expect(safety.finalizingAttempts).toBeGreaterThanOrEqual(5);
  });

  it('a new incremental on top of the compressed chain is right too, and is compressed in turn', async () => {
    const last = taken[taken.length - 1].backup;
    await writeScattered(domain, 'vda', { seed: 'c-inc5', count: 4 }, { expected });
    const b6 = await backup('b6');
    expect(b6).toMatchObject({ type: 'INCREMENTAL', parentid: last.id });
    const [compressed] = await c.untilCompressed([b6.id], 120_000);
    expect(compressed.compressionstatus).toBe('Compressed');
    for (const target of ['vda', 'vdb']) {
      expect({ target, ...(await expected.get(target).compareWith(topFile(b6, target), 'b6', { format: 'qcow2' })) }).toMatchObject({ equal: true });
    }
  });

  it('lists the jobs with every filter: id, backupid, hostid, zoneid, type, executing, scheduled', async () => {
    const first = taken[0].backup.id;
    const jobs = await c.jobs({ backupid: first });
    expect(jobs.map((j) => j.type).sort()).toEqual(['Finalizing', 'Starting']);
    for (const j of jobs) {
      expect(j).toMatchObject({ backupid: first, virtualmachineid: domain.uuid, status: 'Done', attempts: 1, zoneid: expect.any(String), hostid: expect.any(String) });
      expect(j.startdate).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}$/);
      expect(j.removed).toMatch(/^\d{4}-/);
      expect(j.scheduleddate).toMatch(/^\d{4}-/);
    }
    expect(await c.jobs({ id: jobs[0].id })).toEqual([jobs[0]]);
    // Ended jobs are hidden unless asked for (or looked up by id or backup).
    expect(await c.jobs()).toEqual([]);
    const everything = await c.jobs({ showremoved: 'true' });
    expect(everything).toHaveLength(12);
    expect(await c.jobs({ showremoved: 'true', type: 'Finalizing' })).toHaveLength(6);
    expect(await c.jobs({ showremoved: 'true', zoneid: jobs[0].zoneid })).toHaveLength(12);
    expect(await c.jobs({ showremoved: 'true', zoneid: '00000000-0000-4000-8000-000000000000' })).toEqual([]);
    expect(await c.jobs({ showremoved: 'true', executing: 'true' })).toEqual([]);
    expect(await c.jobs({ showremoved: 'true', executing: 'false' })).toHaveLength(12);
    expect(await c.jobs({ showremoved: 'true', scheduled: 'true' })).toEqual([]);
    // hostid: only jobs executing there (none now).
    expect(await c.jobs({ showremoved: 'true', hostid: jobs[0].hostid! })).toEqual([]);
    // The KBOSS alias.
    const service = ((await ok('listBackupServiceJobs', { showremoved: 'true', type: 'StartCompression' })).backupservicejob as { type: string }[]) ?? [];
    expect(service).toHaveLength(6);
    expect(new Set(service.map((j) => j.type))).toEqual(new Set(['StartCompression']));
    expect((await ok('listBackupServiceJobs', { showremoved: 'true', type: 'BackupValidation' })).backupservicejob).toBeUndefined();
    // Bad input names the parameter.
    const bad = await api.call('listBackupCompressionJobs', { type: 'Sideways' });
    expect(bad.status).toBe(431);
    expect(JSON.stringify(bad.body)).toContain('type');
  });
});
