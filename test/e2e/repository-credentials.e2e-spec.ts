import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ApiClient } from '../support/api-client';
import { createTestDomain, run, TestDomain, useLibvirtCleanup } from '../support/libvirt';
import { agentEnv, assignWhenListed, okCaller } from '../support/backup-fixture';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { runStrata, startStrata, StrataProcess } from '../support/strata-process';

/**
 * Repository credentials from the API to the mount (NFS, CIFS and CephFS clients are not available here,
 * so the mount itself fails): the agent, holding no database credentials and not the master key, opens
 * a CIFS password with the host key (`strata keys host`), which the dispatcher sealed the job's copy
 * with; without the key it says what is missing. The password is never in an answer, a log, Redis or
 * a command line.
 */
describe('repository credentials reach the mount, and nothing else (real processes)', () => {
  useLibvirtCleanup();
  const password = `pw-${randomBytes(9).toString('hex')}`;
  let plane: RunningPlane;
  let api: ApiClient;
  let agent: StrataProcess;
  let domain: TestDomain;
  let work: string;
  let keyFile: string;
  let mountRoot: string;
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;
  const ok = okCaller(() => api);

  async function failedBackup(): Promise<string> {
    const started = await ok('createBackup', { virtualmachineid: domain.uuid });
    const job = await api.waitForJob(started.jobid as string, 120_000);
    expect(job.jobstatus).toBe(2);
    const backup = ((await ok('listBackups', { id: started.id as string })).backup as { status: string; failure: string }[])[0];
    expect(backup.status).toBe('Failed');
    expect(JSON.stringify([job, backup])).not.toContain(password);
    return backup.failure;
  }

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    work = await mkdtemp(join(tmpdir(), 'strata-creds-'));
    keyFile = join(work, 'host.key');
    mountRoot = join(work, 'mounts');
    const zone = (await ok('createZone', { name: 'creds-zone' })).zone as { id: string };
    const repo = (await ok('addBackupRepository', { name: 'nas', type: 'cifs', address: '//nas.invalid/backups', mountopts: `username=strata,password=${password},vers=3.0`, zoneid: zone.id }))
      .backuprepository as { id: string; mountopts: string };
    expect(repo.mountopts).toBe('username=strata,vers=3.0');
    const native = (await ok('createNativeBackupOffering', { name: 'cifs' })).nativebackupoffering as { id: string };
    const imported = await ok('importBackupOffering', { name: 'cifs', description: 'cifs', zoneid: zone.id, externalid: native.id, allowuserdrivenbackups: 'true', repositoryid: repo.id });
    const offering = (await api.waitForJob(imported.jobid as string)).jobresult.backupoffering as { id: string };
    agent = startStrata(['agent'], agentEnv(plane, hostName, 'creds-zone', { STRATA_AGENT_KEY_FILE: keyFile, STRATA_AGENT_MOUNT_ROOT: mountRoot }));
    domain = await createTestDomain({ disks: [{ sizeMiB: 16 }], running: true });
    await assignWhenListed(api, domain.uuid, offering.id, () => agent.output());
  });

  afterAll(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await domain?.destroy();
    await plane?.stop();
    // The agent bound its mount root onto itself (it is not shared here): undo that before removing it.
    while ((await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${mountRoot} `)) await run('umount', ['-l', mountRoot]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('without the host key, the backup fails naming the key file and how to make it', async () => {
    const reason = await failedBackup();
    expect(reason).toContain('could not be mounted');
    expect(reason).toContain(keyFile);
    expect(reason).toContain('strata keys host');
  });

  it('with the host key, the agent opens the password and tries the mount with it in a file only', async () => {
    const written = await runStrata(['keys', 'host', '--out', keyFile], plane.env);
    expect(written.code).toBe(0);
    const reason = await failedBackup();
    expect(reason).toContain('could not be mounted');
    // It got as far as mount, with the credentials as a file: the password was opened.
    expect(reason).toMatch(/mount -t cifs -o username=strata,vers=3\.0,credentials=\/\S+\/credentials -- \/\/nas\.invalid\/backups /);
    expect(reason).not.toContain('host key');
    expect(agent.output()).not.toContain(password);
    expect(plane.api.output()).not.toContain(password);
    expect(await runStrata(['keys', 'host', '--out', keyFile], plane.env)).toMatchObject({ code: 2 }); // never overwritten
  });

  it('keeps the password out of Redis: the host job carries it sealed with the host key', async () => {
    const redis = new Redis(plane.env.STRATA_REDIS_URL!);
    try {
      const keys = await redis.keys(`${plane.env.STRATA_QUEUE_PREFIX}:*`);
      let sealed = 0;
      for (const key of keys) {
        if ((await redis.type(key)) !== 'hash') continue;
        const text = JSON.stringify(await redis.hgetall(key));
        expect(text).not.toContain(password);
        if (text.includes('encryptedCredentials')) sealed++;
      }
      expect(sealed).toBeGreaterThan(0); // the backup jobs were there to look at
    } finally {
      redis.disconnect();
    }
  });
});
