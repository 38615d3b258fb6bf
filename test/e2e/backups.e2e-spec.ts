import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { useLibvirtCleanup, writePattern, writeScattered } from '../support/libvirt';
import { backupDir, BackupRow, expectBackupContent, readManifest, takeBackup, useBackupRig } from '../support/backup-fixture';

interface Backup extends BackupRow {
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
  const rig = useBackupRig({ zoneName: 'backup-zone', disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }] });
  const { ok } = rig;

  async function backup(label: string, params: Record<string, string> = {}): Promise<Backup> {
    const b = await takeBackup<Backup>(rig, label, { params });
    expect(await readManifest(rig, b)).toMatchObject({ backupId: b.id, vmId: rig.domain.uuid, type: b.type });
    return b;
  }

  it('takes a full, then incrementals of a running and a stopped VM whose content equals the disks at each moment', async () => {
    await writePattern(rig.domain, 'vda', { offset: 0, length: 4 << 20, pattern: 0x11 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vdb', { offset: 1 << 20, length: 2 << 20, pattern: 0x22 }, { expected: rig.expected });
    const full = await backup('b1');
    expect(full).toMatchObject({ type: 'FULL', fullreason: 'first backup', chainposition: 0 });

    const written = await writeScattered(rig.domain, 'vda', { seed: 'inc1', count: 16 }, { expected: rig.expected });
    await writeScattered(rig.domain, 'vdb', { seed: 'inc1b', count: 4 }, { expected: rig.expected });
    const inc1 = await backup('b2');
    expect(inc1).toMatchObject({ type: 'INCREMENTAL', parentid: full.id, chainid: full.id, chainposition: 1 });
    // An incremental costs what changed: 20 blocks of 64 KiB (plus qcow2 metadata), not the 96 MiB of disk.
    const changed = (written.length + 4) * 65536;
    expect(inc1.size).toBeLessThan(changed + 2 * 1024 * 1024);
    expect(inc1.size).toBeLessThan(full.size);

    await writeScattered(rig.domain, 'vda', { seed: 'inc2', count: 8 }, { expected: rig.expected });
    const inc2 = await backup('b3');
    expect(inc2).toMatchObject({ type: 'INCREMENTAL', parentid: inc1.id, chainposition: 2 });

    await rig.domain.stop();
    await writePattern(rig.domain, 'vdb', { offset: 8 << 20, length: 1 << 20, pattern: 0x33 }, { expected: rig.expected });
    const stoppedInc = await backup('b4');
    expect(stoppedInc).toMatchObject({ type: 'INCREMENTAL', parentid: inc2.id, chainposition: 3 });
    expect(await rig.domain.isActive()).toBe(false); // the VM is left as it was found

    await rig.domain.start();
    await writeScattered(rig.domain, 'vdb', { seed: 'inc4', count: 8 }, { expected: rig.expected });
    const inc4 = await backup('b5');
    expect(inc4).toMatchObject({ type: 'INCREMENTAL', parentid: stoppedInc.id, chainposition: 4 });

    // Every earlier backup still reads back as it was (later ones only add files on top).
    for (const [label, b] of [['b1', full], ['b2', inc1], ['b3', inc2], ['b4', stoppedInc]] as const) await expectBackupContent(rig, b, label);
  });

  it('finishBackupChain makes the next backup full, and an isolated one stays outside the chain', async () => {
    await ok('finishBackupChain', { virtualmachineid: rig.domain.uuid });
    await writePattern(rig.domain, 'vda', { offset: 0, length: 65536, pattern: 0x44 }, { expected: rig.expected });
    const fresh = await backup('b6');
    expect(fresh).toMatchObject({ type: 'FULL', fullreason: 'chain finished', chainposition: 0 });
    const isolated = await backup('b7', { isolated: 'true' });
    expect(isolated).toMatchObject({ type: 'FULL', fullreason: 'isolated' });
    await writePattern(rig.domain, 'vdb', { offset: 0, length: 65536, pattern: 0x55 }, { expected: rig.expected });
    const next = await backup('b8');
    expect(next).toMatchObject({ type: 'INCREMENTAL', parentid: fresh.id });
    expect((await stat(join(backupDir(rig, isolated), 'manifest.json'))).isFile()).toBe(true);
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
      const r = await rig.api.call(command, { id });
      expect({ command, status: r.status }).toEqual({ command, status: 536 });
      expect(JSON.stringify(r.body)).toContain(words);
    }
  });

  it('refuses a backup of a VM without an offering, naming the parameter', async () => {
    const r = await rig.api.call('createBackup', { virtualmachineid: '00000000-0000-4000-8000-000000000000' });
    expect(r.status).toBe(431);
    expect(JSON.stringify(r.body)).toContain('virtualmachineid');
  });
});
