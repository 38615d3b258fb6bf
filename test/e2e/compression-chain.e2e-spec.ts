import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backupDir, expectBackupContent, takeBackup, topFile, useBackupRig } from '../support/backup-fixture';
import { chainSafetyViolations, CompressedBackup, compressionApi, createBackupRetryingSwaps, createCompressCatalog, readStream } from '../support/compression-fixture';
import { run, useLibvirtCleanup, writePattern, writeScattered } from '../support/libvirt';

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
  const rig = useBackupRig({ zoneName: 'compress-zone', disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }], catalog: (api, zoneName) => createCompressCatalog(api, zoneName, { chainSize: 8 }) });
  const { ok } = rig;
  let scratch: string;
  const c = compressionApi(() => rig.api);
  const taken: { label: string; backup: CompressedBackup; uncompressed: number }[] = [];

  /** Its content is compared once the chain is compressed (below), not while compression may be swapping files in. */
  async function backup(label: string): Promise<CompressedBackup> {
    const b = await takeBackup<CompressedBackup>(rig, label, { create: createBackupRetryingSwaps, targets: [] });
    taken.push({ label, backup: b, uncompressed: b.size });
    return b;
  }

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'strata-flatten-'));
  });

  afterAll(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('compresses every backup of a chain while later backups run, and each restores bit-identical to the disks when it was taken', async () => {
    // Compressible data (patterns) in the full, random blocks in the incrementals.
    await writePattern(rig.domain, 'vda', { offset: 0, length: 8 << 20, pattern: 0x11 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vdb', { offset: 1 << 20, length: 4 << 20, pattern: 0x22 }, { expected: rig.expected });
    const full = await backup('b1');
    await writeScattered(rig.domain, 'vda', { seed: 'c-inc1', count: 16 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vdb', { offset: 8 << 20, length: 2 << 20, pattern: 0x33 }, { expected: rig.expected });
    await backup('b2');
    await writeScattered(rig.domain, 'vda', { seed: 'c-inc2', count: 8 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vda', { offset: 20 << 20, length: 1 << 20, pattern: 0x44 }, { expected: rig.expected });
    await backup('b3');
    await rig.domain.stop();
    await writePattern(rig.domain, 'vdb', { offset: 16 << 20, length: 1 << 20, pattern: 0x55 }, { expected: rig.expected });
    await backup('b4');
    await rig.domain.start();
    await writeScattered(rig.domain, 'vdb', { seed: 'c-inc4', count: 8 }, { expected: rig.expected });
    await backup('b5');

    const ids = taken.map((t) => t.backup.id);
    const compressed = await c.untilCompressed(ids, 240_000, () => `(agent: ${rig.agent.output().slice(-3000)})`);
    expect(taken.map((t) => t.backup.type)).toEqual(['FULL', 'INCREMENTAL', 'INCREMENTAL', 'INCREMENTAL', 'INCREMENTAL']);

    for (const [i, { label, backup: before, uncompressed }] of taken.entries()) {
      const after = compressed[i];
      // size becomes the compressed size; uncompressedsize keeps the original.
      expect({ label, compressionstatus: after.compressionstatus, uncompressedsize: after.uncompressedsize }).toEqual({ label, compressionstatus: 'Compressed', uncompressedsize: uncompressed });
      expect(after.size).toBeGreaterThan(0);
      const dir = backupDir(rig, before);
      for (const target of ['vda', 'vdb']) {
        const top = topFile(rig, before, target);
        const info = JSON.parse((await run('qemu-img', ['info', '--output=json', top])).stdout) as { 'backing-filename'?: string; 'format-specific': { data: { 'compression-type': string } } };
        expect({ label, target, type: info['format-specific'].data['compression-type'] }).toEqual({ label, target, type: 'zstd' });
        // The same backing file, by the same relative name.
        expect({ label, target, backing: info['backing-filename'] ?? null }).toEqual({ label, target, backing: before.parentid ? `../${before.parentid}/${rig.volumeIds[target]}.qcow2` : null });
        // Read through the compressed chain: the disk as it was.
        expect({ label, target, ...(await rig.expected.get(target).compareWith(top, label, { format: 'qcow2' })) }).toMatchObject({ equal: true });
        // Flattened to raw, as a restore does: byte for byte the same.
        const flat = join(scratch, `${label}-${target}.raw`);
        await run('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', top, flat], { timeoutMs: 120_000 });
        const cmp = await run('cmp', ['-s', flat, rig.expected.get(target).snapshotPath(label)], { allowFailure: true });
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
    const map = JSON.parse((await run('qemu-img', ['map', '--output=json', topFile(rig, taken[1].backup, 'vda')])).stdout) as { depth: number; data: boolean; length: number }[];
    const ownData = map.filter((m) => m.depth === 0 && m.data).reduce((n, m) => n + m.length, 0);
    expect(ownData).toBeLessThanOrEqual(16 * 65536);

    // Chain safety on the VM's whole stream.
    const events = await readStream(rig.plane.db.url, `vmBackups-${rig.domain.uuid}`);
    const safety = chainSafetyViolations(events);
    expect(safety.violations).toEqual([]);
    expect(safety.finalizingAttempts).toBeGreaterThanOrEqual(5);
  });

  it('a new incremental on top of the compressed chain is right too, and is compressed in turn', async () => {
    const last = taken[taken.length - 1].backup;
    await writeScattered(rig.domain, 'vda', { seed: 'c-inc5', count: 4 }, { expected: rig.expected });
    const b6 = await backup('b6');
    expect(b6).toMatchObject({ type: 'INCREMENTAL', parentid: last.id });
    const [compressed] = await c.untilCompressed([b6.id], 120_000);
    expect(compressed.compressionstatus).toBe('Compressed');
    await expectBackupContent(rig, b6, 'b6');
  });

  it('lists the jobs with every filter: id, backupid, hostid, zoneid, type, executing, scheduled', async () => {
    const first = taken[0].backup.id;
    const jobs = await c.jobs({ backupid: first });
    expect(jobs.map((j) => j.type).sort()).toEqual(['Finalizing', 'Starting']);
    for (const j of jobs) {
      expect(j).toMatchObject({ backupid: first, virtualmachineid: rig.domain.uuid, status: 'Done', attempts: 1, zoneid: expect.any(String), hostid: expect.any(String) });
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
    const bad = await rig.api.call('listBackupCompressionJobs', { type: 'Sideways' });
    expect(bad.status).toBe(431);
    expect(JSON.stringify(bad.body)).toContain('type');
  });
});
