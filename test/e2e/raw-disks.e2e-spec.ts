import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiClient } from '../support/api-client';
import { createTestDomain, ExpectedDisks, run, TestDomain, useLibvirtCleanup, virsh, writePattern, writeScattered } from '../support/libvirt';
import { agentEnv, assignWhenListed, createBackupCatalog, okCaller } from '../support/backup-fixture';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { startStrata, StrataProcess } from '../support/strata-process';

interface Backup {
  id: string;
  type: string;
  status: string;
  chainid: string;
  parentid?: string;
  chainposition: number;
  fullreason?: string;
  tocheckpointid: string;
}

/**
 * Raw disks (issue 3, point 2): a raw image cannot hold a dirty bitmap, so a VM with one is backed up
 * full every time, saying why, running or stopped. Its checkpoints hold no bitmap at all (not even in its
 * qcow2 disk, where one per backup would only pile up), and every backup's content equals the disks.
 */
describe('backups of a VM with a raw disk (real libvirt, real processes)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let agent: StrataProcess;
  let domain: TestDomain;
  let expected: ExpectedDisks;
  let repoDir: string;
  let volumeIds: Record<string, string>;
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;

  const ok = okCaller(() => api);
  const backupOf = async (id: string) => ((await ok('listBackups', { id })).backup as Backup[])[0];

  async function backup(label: string): Promise<Backup> {
    await expected.snapshot(label);
    const started = await ok('createBackup', { virtualmachineid: domain.uuid, name: label });
    const job = await api.waitForJob(started.jobid as string, 120_000);
    if (job.jobstatus !== 1) throw new Error(`backup ${label} failed: ${JSON.stringify(job.jobresult)} (agent: ${agent.output().slice(-3000)})`);
    const b = await backupOf(started.id as string);
    expect(b.status).toBe('BackedUp');
    for (const target of ['vda', 'vdb']) {
      const file = join(repoDir, domain.uuid, b.chainid, b.id, `${volumeIds[target]}.qcow2`);
      const result = await expected.get(target).compareWith(file, label, { format: 'qcow2' });
      expect({ backup: label, target, ...result }).toMatchObject({ equal: true });
      // A full stands alone: no backing file.
      const info = JSON.parse((await run('qemu-img', ['info', '--output=json', file])).stdout) as { 'backing-filename'?: string };
      expect(info['backing-filename']).toBeUndefined();
    }
    const manifest = JSON.parse(await readFile(join(repoDir, domain.uuid, b.chainid, b.id, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ backupId: b.id, type: 'FULL', parentBackupId: null });
    // The checkpoint marks the backup without a bitmap on either disk.
    const checkpoint = (await virsh(['checkpoint-dumpxml', domain.name, b.tocheckpointid, '--no-domain'])).stdout;
    expect(checkpoint).not.toContain("checkpoint='bitmap'");
    return b;
  }

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createBackupCatalog(api, 'raw-zone', 8);
    repoDir = catalog.repoDir;
    agent = startStrata(['agent'], agentEnv(plane, hostName, 'raw-zone'));
    domain = await createTestDomain({ disks: [{ sizeMiB: 32 }, { sizeMiB: 16, format: 'raw' }], running: true });
    expected = await ExpectedDisks.forDomain(domain);
    volumeIds = await assignWhenListed(api, domain.uuid, catalog.offeringId, () => agent.output());
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await domain?.destroy();
    await plane?.stop();
  });

  it('lists the raw disk as raw', async () => {
    const vm = ((await ok('listVirtualMachines', { id: domain.uuid })).virtualmachine as { volumes: { device: string; format: string; path: string }[] }[])[0];
    expect(vm.volumes.map((v) => [v.device, v.format, v.path]).sort()).toEqual([
      ['vda', 'qcow2', domain.disk('vda').path],
      ['vdb', 'raw', domain.disk('vdb').path],
    ]);
  });

  it('takes only full backups, running and stopped, each equal to the disks when it was taken', async () => {
    await writePattern(domain, 'vda', { offset: 0, length: 2 << 20, pattern: 0x61 }, { expected });
    await writePattern(domain, 'vdb', { offset: 1 << 20, length: 2 << 20, pattern: 0x62 }, { expected });
    const first = await backup('r1');
    expect(first).toMatchObject({ type: 'FULL', fullreason: 'first backup', chainposition: 0 });

    await writeScattered(domain, 'vda', { seed: 'raw1a', count: 8 }, { expected });
    await writeScattered(domain, 'vdb', { seed: 'raw1b', count: 8 }, { expected });
    const second = await backup('r2');
    expect(second).toMatchObject({ type: 'FULL', fullreason: 'full-backup-only disks', chainposition: 0 });
    expect(second.chainid).toBe(second.id);

    await domain.stop();
    await writePattern(domain, 'vdb', { offset: 8 << 20, length: 1 << 20, pattern: 0x63 }, { expected });
    await writePattern(domain, 'vda', { offset: 16 << 20, length: 1 << 20, pattern: 0x64 }, { expected });
    const stopped = await backup('r3');
    expect(stopped).toMatchObject({ type: 'FULL', fullreason: 'full-backup-only disks' });
    expect(await domain.isActive()).toBe(false); // left as it was found
    // No bitmap was ever stored in the qcow2 disk (a raw one cannot hold any).
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', domain.disk('vda').path])).stdout) as { 'format-specific'?: { data?: { bitmaps?: unknown[] } } };
    expect(info['format-specific']?.data?.bitmaps ?? []).toEqual([]);

    await domain.start();
    await writeScattered(domain, 'vdb', { seed: 'raw3', count: 4 }, { expected });
    const again = await backup('r4');
    expect(again).toMatchObject({ type: 'FULL', fullreason: 'full-backup-only disks' });

    // Earlier backups still read back as they were.
    for (const [label, b] of [['r1', first], ['r2', second], ['r3', stopped]] as const) {
      for (const target of ['vda', 'vdb']) {
        const file = join(repoDir, domain.uuid, b.chainid, b.id, `${volumeIds[target]}.qcow2`);
        expect(await expected.get(target).compareWith(file, label, { format: 'qcow2' })).toMatchObject({ equal: true });
      }
    }
  });
});
