import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiClient } from '../support/api-client';
import { createTestDomain, ExpectedDisks, TestDomain, useLibvirtCleanup, writePattern, writeScattered } from '../support/libvirt';
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
  size: number;
  virtualsize: number;
  volumes: { id: string; device: string; storedsize?: number }[];
}

/**
 * Proof of content (issue 3, point 10): a two-disk VM, full, writes, incremental, writes, incremental,
 * stop, incremental while stopped, start, incremental. Each backup's chain, read through its top file,
 * equals the disks as they were when it was taken, and an incremental stores about what changed.
 */
describe('backups of a running and stopped VM (real libvirt, real processes)', () => {
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

  async function backup(label: string, params: Record<string, string> = {}): Promise<Backup> {
    await expected.snapshot(label);
    const started = await ok('createBackup', { virtualmachineid: domain.uuid, name: label, ...params });
    const job = await api.waitForJob(started.jobid as string, 120_000);
    if (job.jobstatus !== 1) throw new Error(`backup ${label} failed: ${JSON.stringify(job.jobresult)} (agent: ${agent.output().slice(-2000)})`);
    const b = await backupOf(started.id as string);
    expect(b.status).toBe('BackedUp');
    for (const target of ['vda', 'vdb']) {
      const top = join(repoDir, domain.uuid, b.chainid, b.id, `${volumeIds[target]}.qcow2`);
      const result = await expected.get(target).compareWith(top, label, { format: 'qcow2' });
      expect({ backup: label, target, ...result }).toMatchObject({ equal: true });
    }
    const manifest = JSON.parse(await readFile(join(repoDir, domain.uuid, b.chainid, b.id, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ backupId: b.id, vmId: domain.uuid, type: b.type });
    return b;
  }

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createBackupCatalog(api, 'backup-zone', 8);
    repoDir = catalog.repoDir;
    agent = startStrata(['agent'], agentEnv(plane, hostName, 'backup-zone'));
    domain = await createTestDomain({ disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }], running: true });
    expected = await ExpectedDisks.forDomain(domain);
    volumeIds = await assignWhenListed(api, domain.uuid, catalog.offeringId, () => agent.output());
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await domain?.destroy();
    await plane?.stop();
  });

  it('takes a full, then incrementals of a running and a stopped VM whose content equals the disks at each moment', async () => {
    await writePattern(domain, 'vda', { offset: 0, length: 4 << 20, pattern: 0x11 }, { expected });
    await writePattern(domain, 'vdb', { offset: 1 << 20, length: 2 << 20, pattern: 0x22 }, { expected });
    const full = await backup('b1');
    expect(full).toMatchObject({ type: 'FULL', fullreason: 'first backup', chainposition: 0 });

    const written = await writeScattered(domain, 'vda', { seed: 'inc1', count: 16 }, { expected });
    await writeScattered(domain, 'vdb', { seed: 'inc1b', count: 4 }, { expected });
    const inc1 = await backup('b2');
    expect(inc1).toMatchObject({ type: 'INCREMENTAL', parentid: full.id, chainid: full.id, chainposition: 1 });
    // An incremental costs what changed: 20 blocks of 64 KiB (plus qcow2 metadata), not the 96 MiB of disk.
    const changed = (written.length + 4) * 65536;
    expect(inc1.size).toBeLessThan(changed + 2 * 1024 * 1024);
    expect(inc1.size).toBeLessThan(full.size);

    await writeScattered(domain, 'vda', { seed: 'inc2', count: 8 }, { expected });
    const inc2 = await backup('b3');
    expect(inc2).toMatchObject({ type: 'INCREMENTAL', parentid: inc1.id, chainposition: 2 });

    await domain.stop();
    await writePattern(domain, 'vdb', { offset: 8 << 20, length: 1 << 20, pattern: 0x33 }, { expected });
    const stoppedInc = await backup('b4');
    expect(stoppedInc).toMatchObject({ type: 'INCREMENTAL', parentid: inc2.id, chainposition: 3 });
    expect(await domain.isActive()).toBe(false); // the VM is left as it was found

    await domain.start();
    await writeScattered(domain, 'vdb', { seed: 'inc4', count: 8 }, { expected });
    const inc4 = await backup('b5');
    expect(inc4).toMatchObject({ type: 'INCREMENTAL', parentid: stoppedInc.id, chainposition: 4 });

    // Every earlier backup still reads back as it was (later ones only add files on top).
    for (const [label, b] of [['b1', full], ['b2', inc1], ['b3', inc2], ['b4', stoppedInc]] as const) {
      for (const target of ['vda', 'vdb']) {
        const top = join(repoDir, domain.uuid, b.chainid, b.id, `${volumeIds[target]}.qcow2`);
        expect(await expected.get(target).compareWith(top, label, { format: 'qcow2' })).toMatchObject({ equal: true });
      }
    }
  });

  it('finishBackupChain makes the next backup full, and an isolated one stays outside the chain', async () => {
    await ok('finishBackupChain', { virtualmachineid: domain.uuid });
    await writePattern(domain, 'vda', { offset: 0, length: 65536, pattern: 0x44 }, { expected });
    const fresh = await backup('b6');
    expect(fresh).toMatchObject({ type: 'FULL', fullreason: 'chain finished', chainposition: 0 });
    const isolated = await backup('b7', { isolated: 'true' });
    expect(isolated).toMatchObject({ type: 'FULL', fullreason: 'isolated' });
    await writePattern(domain, 'vdb', { offset: 0, length: 65536, pattern: 0x55 }, { expected });
    const next = await backup('b8');
    expect(next).toMatchObject({ type: 'INCREMENTAL', parentid: fresh.id });
    expect((await stat(join(repoDir, domain.uuid, isolated.chainid, isolated.id, 'manifest.json'))).isFile()).toBe(true);
  });

  it('refuses to delete what backups and VMs still use (536)', async () => {
    const repo = ((await ok('listBackupRepositories', {})).backuprepository as { id: string }[])[0];
    const offering = ((await ok('listBackupOfferings', {})).backupoffering as { id: string }[])[0];
    const zone = ((await ok('listZones', {})).zone as { id: string }[])[0];
    for (const [command, id, words] of [
      ['deleteBackupRepository', repo.id, 'backup(s)'],
      ['deleteBackupOffering', offering.id, 'virtual machine(s)'],
      ['deleteZone', zone.id, 'host(s)'],
    ]) {
      const r = await api.call(command, { id });
      expect({ command, status: r.status }).toEqual({ command, status: 536 });
      expect(JSON.stringify(r.body)).toContain(words);
    }
  });

  it('refuses a backup of a VM without an offering, naming the parameter', async () => {
    const r = await api.call('createBackup', { virtualmachineid: '00000000-0000-4000-8000-000000000000' });
    expect(r.status).toBe(431);
    expect(JSON.stringify(r.body)).toContain('virtualmachineid');
  });
});
