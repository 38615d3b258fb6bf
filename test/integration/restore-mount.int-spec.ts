import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@strata/config';
import { ExecaProcessRunner, ImageInfo, MountDriver, MountRequest, QemuImgDriver, VirshDriver } from '@strata/hypervisor';
import { AgentReport, ConsolidationJobData, RepositoryAccess, RestoreJobData } from '@strata/jobs';
import { BackupExecutor } from '../../apps/host-agent/src/backup-executor';
import { ConsolidationExecutor } from '../../apps/host-agent/src/consolidation-executor';
import { repositoryMountDir, RepositoryMounter } from '../../apps/host-agent/src/repository-mounter';
import { RestoreExecutor, RestoreMountHolds } from '../../apps/host-agent/src/restore-executor';
import { createTestDomain, ExpectedDisks, LIBVIRT_URI, TestDomain, useLibvirtCleanup, virsh, writePattern, writeScattered } from '../support/libvirt';

/** Mounts a local directory (the "share") where the agent would mount NFS; or fails like a refused mount. */
class ShareInsteadDriver extends MountDriver {
  failMount: string | null = null;

  constructor(private readonly share: string) {
    super(new ExecaProcessRunner());
  }

  override async mount(request: MountRequest, options: { redact?: readonly string[] } = {}): Promise<void> {
    if (request.bind) return super.mount(request, options); // the mount root's own bind (prepare)
    if (this.failMount) throw new Error(this.failMount);
    await super.mount({ fsType: null, bind: true, source: this.share, target: request.target, options: [] }, options);
  }
}

/**
 * Restores and consolidations read an NFS repository through the agent's RepositoryMounter (real mounts,
 * real libvirt; the NFS mount itself is a bind mount of a local "share"). A plain restore mounts for its
 * copy and unmounts; a quick restore's VM keeps the repository mounted until its consolidation is done,
 * also when another job releases it meanwhile. The quick restore here moves the VM onto this host: it is
 * defined from the backup's definition and marked as placed here, and the old host's `forgetDomain`
 * removes only a definition that is its own and shut off. A mount that fails fails the job with the reason.
 */
describe('restores through a mounted repository (real mount, real libvirt)', () => {
  useLibvirtCleanup();
  const logger = createLogger('test', 'error');
  const runner = new ExecaProcessRunner();
  const virshDriver = new VirshDriver(LIBVIRT_URI, runner);
  const qemuImg = new QemuImgDriver(runner);
  const reports: AgentReport[] = [];
  const report = async (r: AgentReport) => void reports.push(r);
  let mountRoot: string;
  let share: string;
  let dest: string;
  let driver: ShareInsteadDriver;
  let mounter: RepositoryMounter;
  let holds: RestoreMountHolds;
  let domain: TestDomain;
  let expected: ExpectedDisks;
  const movedName = `strata-test-moved-${randomBytes(3).toString('hex')}`;
  const movedUuid = randomUUID();
  const repo: RepositoryAccess = { repositoryId: randomUUID(), type: 'nfs', address: 'nas:/strata', mountOptions: '', encryptedCredentials: null };
  const volumeId = randomUUID();
  const backupId = randomUUID();

  const mountsBelow = async () => (await driver.mounts()).filter((m) => m.mountPoint.startsWith(`${mountRoot}/`)).map((m) => m.mountPoint);
  const restorer = (hostName: string) => new RestoreExecutor(virshDriver, qemuImg, report, async () => undefined, logger, { mounter, holds, hostName });
  const outcome = <T extends AgentReport['type']>(...types: T[]): Extract<AgentReport, { type: T }> => {
    const r = reports.find((x) => (types as string[]).includes(x.type));
    reports.length = 0;
    if (!r) throw new Error(`no ${types.join(' or ')} report`);
    return r as Extract<AgentReport, { type: T }>;
  };
  const backingOf = async (path: string) => ((await qemuImg.info(path, { forceShare: true })) as ImageInfo).backingFilename;

  function restoreJob(over: Partial<RestoreJobData>): RestoreJobData {
    return {
      restoreId: randomUUID(),
      vmId: domain.uuid,
      backupId,
      kind: 'vm',
      quick: false,
      domainName: domain.name,
      targetVmId: domain.uuid,
      manifestFile: `${domain.uuid}/${backupId}/${backupId}/manifest.json`,
      repository: repo,
      volumes: [
        {
          volumeId,
          target: 'vda',
          format: 'qcow2',
          virtualSizeBytes: domain.disk('vda').sizeBytes,
          backupFile: `${domain.uuid}/${backupId}/${backupId}/${volumeId}.qcow2`,
          destinationPath: domain.disk('vda').path,
        },
      ],
      consolidationJobId: null,
      bandwidthBytesPerSec: 0,
      timeoutSeconds: 600,
      ...over,
    };
  }

  beforeAll(async () => {
    mountRoot = await mkdtemp(join(tmpdir(), 'strata-mount-root-'));
    share = await mkdtemp(join(tmpdir(), 'strata-share-'));
    dest = await mkdtemp(join(tmpdir(), 'strata-moved-'));
    driver = new ShareInsteadDriver(share);
    mounter = new RepositoryMounter(driver, mountRoot, () => '', logger);
    holds = new RestoreMountHolds();
    await mounter.prepare();
    // Started after prepare(): its QEMU sees mounts made under the (shared) mount root.
    domain = await createTestDomain({ disks: [{ sizeMiB: 16 }], running: true });
    expected = await ExpectedDisks.forDomain(domain);
    await writePattern(domain, 'vda', { offset: 0, length: 2 << 20, pattern: 0x3c }, { expected });
    await writeScattered(domain, 'vda', { seed: 'restore-mount', count: 8 }, { expected });
    await expected.snapshot('b1');
    const backups = new BackupExecutor(virshDriver, qemuImg, report, 'test-host', logger, mounter);
    await backups.run({
      backupId,
      vmId: domain.uuid,
      domainName: domain.name,
      chainId: backupId,
      type: 'FULL',
      checkpointName: `strata-${backupId}`,
      parentCheckpointName: null,
      parentCheckpointXml: null,
      repository: repo,
      volumes: [{ volumeId, target: 'vda', sourcePath: domain.disk('vda').path, virtualSizeBytes: domain.disk('vda').sizeBytes, targetFile: `${domain.uuid}/${backupId}/${backupId}/${volumeId}.qcow2`, backingFile: null }],
      timeoutSeconds: 600,
      quiesce: false,
    });
    const backedUp = outcome('BackupSucceeded', 'BackupFailed');
    if (backedUp.type !== 'BackupSucceeded') throw new Error(`backup failed: ${JSON.stringify(backedUp)}`);
    await domain.stop();
  });

  afterAll(async () => {
    await virsh(['destroy', movedName], { allowFailure: true });
    await virsh(['undefine', movedName, '--checkpoints-metadata'], { allowFailure: true });
    await domain?.destroy();
    for (const m of (await driver.mounts()).filter((x) => x.mountPoint.startsWith(`${mountRoot}/`)).reverse()) await driver.unmount(m.mountPoint, { lazy: true }).catch(() => undefined);
    while (await driver.mountAt(mountRoot)) await driver.unmount(mountRoot, { lazy: true });
    for (const dir of [mountRoot, share, dest]) await rm(dir, { recursive: true, force: true });
  });

  it('a plain restore copies through the mount and unmounts when done', async () => {
    await writePattern(domain, 'vda', { offset: 0, length: 1 << 20, pattern: 0x77 }); // offline: the restore must undo it
    expect((await expected.get('vda').compareWith(domain.disk('vda').path, 'b1')).equal).toBe(false);
    await restorer('host-a').run(restoreJob({}));
    expect(outcome('RestoreSucceeded', 'RestoreFailed')).toMatchObject({ type: 'RestoreSucceeded' });
    expect(await expected.get('vda').compareWith(domain.disk('vda').path, 'b1')).toMatchObject({ equal: true });
    expect(await mountsBelow()).toEqual([]);
    expect(holds.restores()).toEqual([]);
  });

  it('a quick restore moved here defines the VM from the backup, and its VM keeps the repository mounted until consolidated', async () => {
    const dir = repositoryMountDir(mountRoot, repo);
    const path = join(dest, 'disks', 'vda.qcow2'); // a directory this host does not have yet
    const job = restoreJob({ quick: true, targetVmId: movedUuid, domainName: movedName, movedFromHostId: randomUUID(), volumes: [{ ...restoreJob({}).volumes[0], destinationPath: path }] });
    await restorer('host-b').run(job);
    expect(outcome('RestoreSucceeded', 'RestoreFailed')).toMatchObject({ type: 'RestoreSucceeded', disks: [{ volumeId, target: 'vda', path }] });
    expect((await virsh(['domstate', movedName])).stdout.trim()).toBe('running');
    const moved = await virshDriver.describeDomain(movedName, { inactive: true });
    expect(moved).toMatchObject({ uuid: movedUuid, placementHost: 'host-b', disks: [expect.objectContaining({ target: 'vda', sourcePath: path, format: 'qcow2' })] });
    expect(await backingOf(path)).toBe(join(dir, job.volumes[0].backupFile));
    expect(await mountsBelow()).toEqual([dir]);
    expect(holds.restores()).toEqual([job.restoreId]);

    // Another job using the repository meanwhile does not unmount it under the VM.
    await restorer('host-b').run(restoreJob({}));
    expect(outcome('RestoreSucceeded', 'RestoreFailed')).toMatchObject({ type: 'RestoreSucceeded' });
    expect(await mountsBelow()).toEqual([dir]);

    const consolidation: ConsolidationJobData = { restoreId: job.restoreId, vmId: domain.uuid, targetVmId: movedUuid, domainName: movedName, disks: [{ volumeId, target: 'vda', path }], bandwidthBytesPerSec: 0, repository: repo };
    await new ConsolidationExecutor(virshDriver, qemuImg, report, logger, mounter, holds).run(consolidation);
    expect(outcome('ConsolidationSucceeded', 'ConsolidationFailed')).toMatchObject({ type: 'ConsolidationSucceeded' });
    expect(await backingOf(path)).toBeNull();
    expect(holds.restores()).toEqual([]);
    expect(await mountsBelow()).toEqual([]);
    await virsh(['destroy', movedName]);
    expect(await expected.get('vda').compareWith(path, 'b1')).toMatchObject({ equal: true });
  });

  it("the old host's forgetDomain removes only its own shut-off definition", async () => {
    const forget = { restoreId: randomUUID(), vmId: movedUuid, domainName: movedName, movedToHostId: randomUUID() };
    const listed = async () => (await virshDriver.listDomains()).some((d) => d.uuid === movedUuid);
    // Placed on host-b: to host-a's agent (sharing this libvirt) it is the moved VM, not a stale copy.
    await restorer('host-a').forget(forget);
    expect(await listed()).toBe(true);
    // Running: never undefined under the guest.
    await virsh(['start', movedName]);
    await restorer('host-b').forget(forget);
    expect(await listed()).toBe(true);
    await virsh(['destroy', movedName]);
    await restorer('host-b').forget(forget);
    expect(await listed()).toBe(false);
    await restorer('host-b').forget(forget); // again: nothing there, nothing to do
  });

  it('a repository that cannot be mounted fails the restore and the consolidation with the reason, holding nothing', async () => {
    driver.failMount = 'mount.nfs: access denied by server while mounting nas:/strata';
    try {
      await restorer('host-a').run(restoreJob({ quick: true }));
      const failed = outcome('RestoreSucceeded', 'RestoreFailed');
      expect(failed).toMatchObject({ type: 'RestoreFailed', cleanedUp: [] });
      expect(failed.type === 'RestoreFailed' && failed.reason).toBe(`repository ${repo.repositoryId} could not be mounted: mount.nfs: access denied by server while mounting nas:/strata`);
      expect((await virsh(['domstate', domain.name])).stdout.trim()).toBe('shut off');
      expect(await backingOf(domain.disk('vda').path)).toBeNull();
      const consolidation: ConsolidationJobData = { restoreId: randomUUID(), vmId: domain.uuid, targetVmId: domain.uuid, domainName: domain.name, disks: [{ volumeId, target: 'vda', path: domain.disk('vda').path }], bandwidthBytesPerSec: 0, repository: repo };
      await new ConsolidationExecutor(virshDriver, qemuImg, report, logger, mounter, holds).run(consolidation);
      expect(outcome('ConsolidationSucceeded', 'ConsolidationFailed')).toMatchObject({ type: 'ConsolidationFailed', reason: expect.stringContaining('could not be mounted: mount.nfs: access denied') });
      expect(mounter.holders().size).toBe(0);
      expect(holds.restores()).toEqual([]);
      expect(await mountsBelow()).toEqual([]);
    } finally {
      driver.failMount = null;
    }
  });
});
