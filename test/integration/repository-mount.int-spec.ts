import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretBox } from '@strata/application';
import { createLogger } from '@strata/config';
import { ExecaProcessRunner, MountDriver, mountArgs, MountRequest, QemuImgDriver, VirshDriver } from '@strata/hypervisor';
import { AgentReport, BackupJobData, RepositoryAccess } from '@strata/jobs';
import { BackupExecutor } from '../../apps/host-agent/src/backup-executor';
import { repositoryMountDir, RepositoryMounter } from '../../apps/host-agent/src/repository-mounter';
import { createTestDomain, ExpectedDisks, LIBVIRT_URI, run, TestDomain, useLibvirtCleanup, writePattern, writeScattered } from '../support/libvirt';

/**
 * Real mounts (DESIGN.md: no NFS, CIFS or CephFS client here). The agent's RepositoryMounter runs
 * unchanged against the real `mount`, `umount` and mount table; only the last step differs: where it
 * would run `mount -t cifs ... //nas/strata DIR`, a bind mount of a local directory (the "share") is
 * made instead, after checking the command it would have run and the credentials file it wrote. A real
 * VM is then backed up through it twice (full, incremental), as the agent does.
 */
class ShareInsteadDriver extends MountDriver {
  /** What the agent asked for, with the credentials file as it was during the mount. */
  readonly asked: { args: string[]; credentials: { content: string; mode: number } | null }[] = [];

  constructor(private readonly share: string) {
    super(new ExecaProcessRunner());
  }

  override async mount(request: MountRequest, options: { redact?: readonly string[] } = {}): Promise<void> {
    if (request.bind) return super.mount(request, options); // the mount root's own bind (prepare)
    const file = request.options.find((o) => o.startsWith('credentials='))?.slice('credentials='.length);
    this.asked.push({ args: mountArgs(request), credentials: file ? { content: readFileSync(file, 'utf8'), mode: statSync(file).mode & 0o777 } : null });
    await super.mount({ fsType: null, bind: true, source: this.share, target: request.target, options: [] }, options);
  }
}

describe('repository mounts (real mount, real libvirt)', () => {
  useLibvirtCleanup();
  const logger = createLogger('test', 'error');
  const password = 'correct-horse-battery-staple';
  const master = SecretBox.fromKey(Buffer.alloc(32, 5));
  let mountRoot: string;
  let share: string;
  let driver: ShareInsteadDriver;
  let mounter: RepositoryMounter;
  let repo: RepositoryAccess;
  let domain: TestDomain;

  /** Mount points under the mount root (the root's own bind aside). */
  const mountsBelow = async () => (await driver.mounts()).filter((m) => m.mountPoint.startsWith(`${mountRoot}/`)).map((m) => m.mountPoint);

  beforeAll(async () => {
    mountRoot = await mkdtemp(join(tmpdir(), 'strata-mount-root-'));
    share = await mkdtemp(join(tmpdir(), 'strata-share-'));
    driver = new ShareInsteadDriver(share);
    mounter = new RepositoryMounter(driver, mountRoot, (c) => master.hostKey().decrypt(c), logger);
    repo = { repositoryId: randomUUID(), type: 'cifs', address: '//nas/strata', mountOptions: 'username=strata,vers=3.0', encryptedCredentials: master.hostKey().encrypt(`password=${password}`) };
  });

  afterAll(async () => {
    await domain?.destroy();
    for (const m of (await driver.mounts()).filter((x) => x.mountPoint.startsWith(`${mountRoot}/`)).reverse()) await driver.unmount(m.mountPoint, { lazy: true }).catch(() => undefined);
    while (await driver.mountAt(mountRoot)) await driver.unmount(mountRoot, { lazy: true });
    await rm(mountRoot, { recursive: true, force: true });
    await rm(share, { recursive: true, force: true });
  });

  it('makes the mount root a shared mount point, once', async () => {
    await mounter.prepare();
    const entry = await driver.mountAt(mountRoot);
    expect(entry?.propagation.some((p) => p.startsWith('shared:'))).toBe(true);
    await mounter.prepare();
    expect((await driver.mounts()).filter((m) => m.mountPoint === mountRoot)).toHaveLength(1);
  });

  it('mounts for concurrent users once, with the password only in a 0600 file, and unmounts after the last', async () => {
    const dir = repositoryMountDir(mountRoot, repo);
    const [a, b] = await Promise.all([mounter.acquire(repo), mounter.acquire(repo)]);
    expect(a.root).toBe(dir);
    expect(await mountsBelow()).toEqual([dir]);
    expect(driver.asked).toHaveLength(1);
    const { args, credentials } = driver.asked[0];
    expect(args.slice(0, 4)).toEqual(['-t', 'cifs', '-o', expect.stringMatching(/^username=strata,vers=3\.0,credentials=\/.+\/credentials$/)]);
    expect(args.slice(4)).toEqual(['--', '//nas/strata', dir]);
    expect(args.join(' ')).not.toContain(password);
    expect(credentials).toEqual({ content: `password=${password}\n`, mode: 0o600 });
    expect(existsSync(args[3].split('credentials=')[1])).toBe(false); // removed right after mounting

    await a.release();
    expect(await mountsBelow()).toEqual([dir]);
    await b.release();
    expect(await mountsBelow()).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  });

  it('reuses a mount it finds (an earlier agent left it) and still unmounts it when done', async () => {
    const dir = repositoryMountDir(mountRoot, repo);
    await run('mkdir', ['-p', dir]);
    await driver.mount({ fsType: null, bind: true, source: share, target: dir, options: [] });
    const asked = driver.asked.length;
    const m = await mounter.acquire(repo);
    expect(driver.asked).toHaveLength(asked);
    await m.release();
    expect(await mountsBelow()).toEqual([]);
  });

  it('backs up a running VM into the mounted repository (full, then incremental), mounting for each backup', async () => {
    // Started after prepare(): its QEMU sees mounts made under the (shared) mount root.
    domain = await createTestDomain({ disks: [{ sizeMiB: 32 }], running: true });
    const expected = await ExpectedDisks.forDomain(domain);
    const runner = new ExecaProcessRunner();
    const reports: AgentReport[] = [];
    const executor = new BackupExecutor(new VirshDriver(LIBVIRT_URI, runner), new QemuImgDriver(runner), async (r) => void reports.push(r), 'test-host', logger, mounter);
    const volumeId = randomUUID();
    const job = (backupId: string, parent: { id: string; checkpointXml: string } | null): BackupJobData => ({
      backupId,
      vmId: domain.uuid,
      domainName: domain.name,
      chainId: parent ? parent.id : backupId,
      type: parent ? 'INCREMENTAL' : 'FULL',
      checkpointName: `strata-${backupId}`,
      parentCheckpointName: parent ? `strata-${parent.id}` : null,
      parentCheckpointXml: parent?.checkpointXml ?? null,
      repository: repo,
      volumes: [
        {
          volumeId,
          target: 'vda',
          sourcePath: domain.disk('vda').path,
          virtualSizeBytes: domain.disk('vda').sizeBytes,
          targetFile: `${domain.uuid}/${parent ? parent.id : backupId}/${backupId}/${volumeId}.qcow2`,
          backingFile: parent ? `../${parent.id}/${volumeId}.qcow2` : null,
        },
      ],
      timeoutSeconds: 600,
      quiesce: false,
    });
    const succeeded = () => {
      const r = reports.find((x) => x.type === 'BackupSucceeded' || x.type === 'BackupFailed')!;
      reports.length = 0;
      if (r.type !== 'BackupSucceeded') throw new Error(`backup failed: ${JSON.stringify(r)}`);
      return r;
    };

    await writePattern(domain, 'vda', { offset: 0, length: 4 << 20, pattern: 0x5a }, { expected });
    await expected.snapshot('m1');
    const b1 = randomUUID();
    await executor.run(job(b1, null));
    const full = succeeded();
    expect(full.backupType).toBe('FULL');
    expect(await mountsBelow()).toEqual([]); // unmounted after the backup

    await writeScattered(domain, 'vda', { seed: 'mount-inc', count: 8 }, { expected });
    await expected.snapshot('m2');
    const b2 = randomUUID();
    await executor.run(job(b2, { id: b1, checkpointXml: full.checkpointXml }));
    expect(succeeded().backupType).toBe('INCREMENTAL');
    expect(await mountsBelow()).toEqual([]);

    // The files are on the "share", and each backup reads back as the disk was.
    expect((await readdir(join(share, domain.uuid, b1))).sort()).toEqual([b1, b2].sort());
    expect(await expected.get('vda').compareWith(join(share, domain.uuid, b1, b1, `${volumeId}.qcow2`), 'm1')).toMatchObject({ equal: true });
    expect(await expected.get('vda').compareWith(join(share, domain.uuid, b1, b2, `${volumeId}.qcow2`), 'm2')).toMatchObject({ equal: true });
  });
});
