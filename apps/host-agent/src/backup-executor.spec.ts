import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@strata/config';
import { BlockJobInfo, QemuImgDriver, VirshDriver } from '@strata/hypervisor';
import { AgentReport, BackupJobData } from '@strata/jobs';
import { BackupExecutor, backupXml, bitmapTargets, checkpointXml } from './backup-executor';
import { BackupThrottle, bandwidthShare } from './backup-throttle';

describe('checkpoint of a backup', () => {
  const qcow2 = (target: string) => ({ target, format: 'qcow2' });

  it('puts a bitmap on every backed-up disk of an all-qcow2 VM, none on a disk left out', () => {
    const targets = bitmapTargets([{ target: 'vda' }, { target: 'vdb' }], [qcow2('vda'), qcow2('vdb'), qcow2('vdc')]);
    expect(targets).toEqual(['vda', 'vdb']);
    expect(checkpointXml('strata-1', targets, ['vda', 'vdb', 'vdc'])).toBe(
      "<domaincheckpoint><name>strata-1</name><disks><disk name='vda' checkpoint='bitmap'/><disk name='vdb' checkpoint='bitmap'/><disk name='vdc' checkpoint='no'/></disks></domaincheckpoint>",
    );
  });

  it('puts no bitmap anywhere when a backed-up disk is raw (the VM is full-backup-only)', () => {
    const targets = bitmapTargets([{ target: 'vda' }, { target: 'vdb' }], [qcow2('vda'), { target: 'vdb', format: 'raw' }]);
    expect(targets).toEqual([]);
    expect(checkpointXml('strata-2', targets, ['vda', 'vdb'])).toBe(
      "<domaincheckpoint><name>strata-2</name><disks><disk name='vda' checkpoint='no'/><disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>",
    );
  });

  it('treats a disk whose format libvirt does not name as unable to hold a bitmap', () => {
    expect(bitmapTargets([{ target: 'vda' }], [{ target: 'vda', format: null }])).toEqual([]);
  });

  it('still writes every backed-up disk, raw ones included, into a qcow2 target', () => {
    expect(backupXml([{ target: 'vdb', file: '/r/x/vdb.qcow2' }], ['vda', 'vdb'], null)).toBe(
      "<domainbackup mode='push'><disks><disk name='vdb' type='file'><target file='/r/x/vdb.qcow2'/><driver type='qcow2'/></disk><disk name='vda' backup='no'/></disks></domainbackup>",
    );
  });
});

describe('BackupThrottle', () => {
  const logger = createLogger('test', 'error');

  function fakeVirsh(jobs: Record<string, BlockJobInfo | null>) {
    const speeds: [string, number][] = [];
    const virsh = {
      async blockJobSetBandwidth(_domain: string, disk: string, bytesPerSec: number) {
        if (!jobs[disk]) throw new Error(`disk ${disk} does not have an active block job`);
        speeds.push([disk, bytesPerSec]);
      },
      async blockJobInfo(_domain: string, disk: string) {
        return jobs[disk] ?? null;
      },
    } as unknown as VirshDriver;
    return { virsh, speeds };
  }
  const job = (cur: number, end: number): BlockJobInfo => ({ type: 'backup', cur, end, bandwidth: 0 });

  it('shares the limit among the disks, at least one byte per second each', () => {
    expect(bandwidthShare(1_000_000, 2)).toBe(500_000);
    expect(bandwidthShare(1_000_001, 3)).toBe(333_333);
    expect(bandwidthShare(1, 4)).toBe(1);
    expect(bandwidthShare(10, 0)).toBe(10);
  });

  it('limits every running disk job right away; a job already finished gets nothing and leaves its part to the others', async () => {
    const { virsh, speeds } = fakeVirsh({ vda: job(0, 100), vdb: null });
    await new BackupThrottle(virsh, 'dom', ['vda', 'vdb'], 1000, logger).start();
    expect(speeds).toEqual([
      ['vda', 500],
      ['vda', 1000],
    ]);
  });

  it('gives a finished disk part to the disks still running, at most once a second', async () => {
    const jobs: Record<string, BlockJobInfo | null> = { vda: job(0, 100), vdb: job(0, 100), vdc: job(0, 100) };
    const { virsh, speeds } = fakeVirsh(jobs);
    const throttle = new BackupThrottle(virsh, 'dom', ['vda', 'vdb', 'vdc'], 900, logger);
    await throttle.start();
    expect(speeds.splice(0)).toEqual([
      ['vda', 300],
      ['vdb', 300],
      ['vdc', 300],
    ]);
    jobs.vdb = job(100, 100); // done, not dismissed yet
    jobs.vdc = null; // done and gone
    throttle.tick(); // within the second: nothing
    await throttle.stop();
    expect(speeds).toEqual([]);

    const later = new BackupThrottle(virsh, 'dom', ['vda', 'vdb'], 900, logger);
    jobs.vdb = job(0, 100);
    await later.start();
    speeds.splice(0);
    jobs.vdb = job(100, 100);
    const now = Date.now();
    const spy = jest.spyOn(Date, 'now').mockReturnValue(now + 1500);
    try {
      later.tick();
      await later.stop();
    } finally {
      spy.mockRestore();
    }
    expect(speeds).toEqual([['vda', 900]]);
  });
});

describe('BackupExecutor failure reporting', () => {
  it('reports the failure even when removing the partial files fails too (a backup must never stay BackingUp)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'strata-backup-executor-'));
    try {
      // A repository root that is a file: every path under it fails with ENOTDIR, the clean-up's included.
      const root = join(dir, 'not-a-directory');
      await writeFile(root, '');
      const virsh = {
        domainState: async () => ({ state: 'running' }),
        domJobInfo: async () => ({ type: 'none' }),
        checkpointNames: async () => [],
        checkpointList: async () => [],
        domainDisks: async () => [{ target: 'vda', device: 'disk', format: 'qcow2', sourcePath: '/images/vm.qcow2' }],
        watchJobCompleted: async () => false,
      } as unknown as VirshDriver;
      const reports: AgentReport[] = [];
      const executor = new BackupExecutor(virsh, {} as QemuImgDriver, async (r) => void reports.push(r), 'host-a', createLogger('test', 'error'));
      const job: BackupJobData = {
        backupId: 'b1',
        vmId: 'vm1',
        domainName: 'vm1-domain',
        chainId: 'b1',
        type: 'FULL',
        checkpointName: 'strata-b1',
        parentCheckpointName: null,
        parentCheckpointXml: null,
        repository: { repositoryId: 'r1', type: 'local', address: root, mountOptions: '', encryptedCredentials: null },
        volumes: [{ volumeId: 'v1', target: 'vda', sourcePath: '/images/vm.qcow2', virtualSizeBytes: 1 << 20, targetFile: 'vm1/b1/b1/v1.qcow2', backingFile: null }],
        timeoutSeconds: 60,
        quiesce: false,
      };
      await executor.run(job);
      expect(reports.map((r) => r.type)).toEqual(['BackupStarted', 'BackupFailed']);
      const failed = reports[1] as Extract<AgentReport, { type: 'BackupFailed' }>;
      expect(failed.reason).toMatch(/ENOTDIR/);
      expect(failed.cleanedUp.join('\n')).toMatch(/could not remove the partial backup files .*ENOTDIR/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
