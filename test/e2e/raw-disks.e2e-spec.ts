import { run, useLibvirtCleanup, virsh, writePattern, writeScattered } from '../support/libvirt';
import { BackupRow, expectBackupContent, readManifest, takeBackup, topFile, useBackupRig } from '../support/backup-fixture';

interface Backup extends BackupRow {
  tocheckpointid: string;
}

/**
 * Raw disks (issue 3, point 2): a raw image cannot hold a dirty bitmap, so a VM with one is backed up
 * full every time, saying why, running or stopped. Its checkpoints hold no bitmap at all (not even in its
 * qcow2 disk, where one per backup would only pile up), and every backup's content equals the disks.
 */
describe('backups of a VM with a raw disk (real libvirt, real processes)', () => {
  useLibvirtCleanup();
  const rig = useBackupRig({ zoneName: 'raw-zone', disks: [{ sizeMiB: 32 }, { sizeMiB: 16, format: 'raw' }] });
  const { ok } = rig;

  async function backup(label: string): Promise<Backup> {
    const b = await takeBackup<Backup>(rig, label);
    for (const target of ['vda', 'vdb']) {
      // A full stands alone: no backing file.
      const info = JSON.parse((await run('qemu-img', ['info', '--output=json', topFile(rig, b, target)])).stdout) as { 'backing-filename'?: string };
      expect(info['backing-filename']).toBeUndefined();
    }
    expect(await readManifest(rig, b)).toMatchObject({ backupId: b.id, type: 'FULL', parentBackupId: null });
    // The checkpoint marks the backup without a bitmap on either disk.
    const checkpoint = (await virsh(['checkpoint-dumpxml', rig.domain.name, b.tocheckpointid, '--no-domain'])).stdout;
    expect(checkpoint).not.toContain("checkpoint='bitmap'");
    return b;
  }

  it('lists the raw disk as raw', async () => {
    const vm = ((await ok('listVirtualMachines', { id: rig.domain.uuid })).virtualmachine as { volumes: { device: string; format: string; path: string }[] }[])[0];
    expect(vm.volumes.map((v) => [v.device, v.format, v.path]).sort()).toEqual([
      ['vda', 'qcow2', rig.domain.disk('vda').path],
      ['vdb', 'raw', rig.domain.disk('vdb').path],
    ]);
  });

  it('takes only full backups, running and stopped, each equal to the disks when it was taken', async () => {
    await writePattern(rig.domain, 'vda', { offset: 0, length: 2 << 20, pattern: 0x61 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vdb', { offset: 1 << 20, length: 2 << 20, pattern: 0x62 }, { expected: rig.expected });
    const first = await backup('r1');
    expect(first).toMatchObject({ type: 'FULL', fullreason: 'first backup', chainposition: 0 });

    await writeScattered(rig.domain, 'vda', { seed: 'raw1a', count: 8 }, { expected: rig.expected });
    await writeScattered(rig.domain, 'vdb', { seed: 'raw1b', count: 8 }, { expected: rig.expected });
    const second = await backup('r2');
    expect(second).toMatchObject({ type: 'FULL', fullreason: 'full-backup-only disks', chainposition: 0 });
    expect(second.chainid).toBe(second.id);

    await rig.domain.stop();
    await writePattern(rig.domain, 'vdb', { offset: 8 << 20, length: 1 << 20, pattern: 0x63 }, { expected: rig.expected });
    await writePattern(rig.domain, 'vda', { offset: 16 << 20, length: 1 << 20, pattern: 0x64 }, { expected: rig.expected });
    const stopped = await backup('r3');
    expect(stopped).toMatchObject({ type: 'FULL', fullreason: 'full-backup-only disks' });
    expect(await rig.domain.isActive()).toBe(false); // left as it was found
    // No bitmap was ever stored in the qcow2 disk (a raw one cannot hold any).
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', rig.domain.disk('vda').path])).stdout) as { 'format-specific'?: { data?: { bitmaps?: unknown[] } } };
    expect(info['format-specific']?.data?.bitmaps ?? []).toEqual([]);

    await rig.domain.start();
    await writeScattered(rig.domain, 'vdb', { seed: 'raw3', count: 4 }, { expected: rig.expected });
    const again = await backup('r4');
    expect(again).toMatchObject({ type: 'FULL', fullreason: 'full-backup-only disks' });

    // Earlier backups still read back as they were.
    for (const [label, b] of [['r1', first], ['r2', second], ['r3', stopped]] as const) await expectBackupContent(rig, b, label);
  });
});
