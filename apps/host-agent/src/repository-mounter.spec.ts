import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretBox } from '@strata/application';
import { createLogger } from '@strata/config';
import { MountDriver, MountEntry, ProcessRunner, RunOptions, RunResult } from '@strata/hypervisor';
import { RepositoryAccess } from '@strata/jobs';
import { hostKeyCredentials, mountRepository, repositoryCredentialFiles, repositoryMountDir, repositoryMountRequest, RepositoryMounter, UnsupportedRepositoryError } from './repository-mounter';

/** Plays mount/umount against an in-memory mount table; reads the files named by credential options while "mounting". */
class FakeMountRunner implements ProcessRunner {
  calls: { program: string; args: string[]; options: RunOptions; files: Record<string, { content: string; mode: number }> }[] = [];
  table: MountEntry[] = [];
  failMount: string | null = null;

  async run(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const files: Record<string, { content: string; mode: number }> = {};
    const o = args.indexOf('-o');
    for (const item of o >= 0 ? args[o + 1].split(',') : []) {
      const m = /^(credentials|secretfile)=(.*)$/.exec(item);
      if (m) files[m[1]] = { content: readFileSync(m[2], 'utf8'), mode: statSync(m[2]).mode & 0o777 };
    }
    this.calls.push({ program, args: [...args], options, files });
    const target = args[args.length - 1];
    if (program === 'mount' && !args.includes('--make-shared')) {
      if (this.failMount) throw new Error(this.failMount);
      this.table.push({ mountPoint: target, fsType: args[args.indexOf('-t') + 1], source: args[args.length - 2], propagation: [] });
    }
    if (program === 'umount') this.table = this.table.filter((m) => m.mountPoint !== target);
    return { program, args: [...args], exitCode: 0, stdout: '', stderr: '', durationMs: 1 };
  }
}

const logger = createLogger('test', 'error');
const repo = (over: Partial<RepositoryAccess>): RepositoryAccess => ({ repositoryId: '6f1c2f4e-2d7a-4d2b-9d0e-0a1b2c3d4e5f', type: 'nfs', address: 'nas1:/export/backups', mountOptions: '', encryptedCredentials: null, ...over });

describe('repository mount commands', () => {
  it('nfs: mount -t nfs with the visible options, no credentials', () => {
    expect(repositoryMountRequest(repo({ mountOptions: 'vers=4.1,noatime' }), '/m/r')).toEqual({ fsType: 'nfs', source: 'nas1:/export/backups', target: '/m/r', options: ['vers=4.1', 'noatime'] });
    expect(repositoryCredentialFiles('nfs', null)).toEqual([]);
    expect(() => repositoryCredentialFiles('nfs', 'password=x')).toThrow(/nfs repository takes no credentials/);
  });

  it('cifs: the password goes into a credentials file, never into the options', () => {
    const files = repositoryCredentialFiles('cifs', 'password=Pa55!word#1');
    expect(files).toEqual([{ name: 'credentials', content: 'password=Pa55!word#1\n', option: 'credentials', secrets: ['Pa55!word#1'] }]);
    expect(repositoryCredentialFiles('cifs', 'pass=abc')[0].content).toBe('password=abc\n');
    const request = repositoryMountRequest(repo({ type: 'cifs', address: '//fs1/backups', mountOptions: 'username=strata,vers=3.0' }), '/m/r', ['credentials=/dev/shm/t/credentials']);
    expect(request).toEqual({ fsType: 'cifs', source: '//fs1/backups', target: '/m/r', options: ['username=strata', 'vers=3.0', 'credentials=/dev/shm/t/credentials'] });
    expect(() => repositoryCredentialFiles('cifs', 'secret=k')).toThrow(/password or pass/);
  });

  it('cephfs: mount -t ceph, the key goes into a secretfile', () => {
    const key = 'AQBSdFhbAAAAABAAc3RyYXRhLXRlc3Qta2V5LXZhbHVlPT0=';
    expect(repositoryCredentialFiles('cephfs', `secret=${key}`)).toEqual([{ name: 'secret', content: `${key}\n`, option: 'secretfile', secrets: [key] }]);
    expect(repositoryMountRequest(repo({ type: 'cephfs', address: 'mon1:6789,mon2:/backups', mountOptions: 'name=strata' }), '/m/r', ['secretfile=/dev/shm/t/secret'])).toEqual({
      fsType: 'ceph',
      source: 'mon1:6789,mon2:/backups',
      target: '/m/r',
      options: ['name=strata', 'secretfile=/dev/shm/t/secret'],
    });
    expect(() => repositoryCredentialFiles('cephfs', 'password=x')).toThrow(/takes secret/);
  });

  it('mounts a repository in its own directory, a new one when its address or options change', () => {
    const a = repositoryMountDir('/m', repo({}));
    expect(a).toMatch(/^\/m\/6f1c2f4e-2d7a-4d2b-9d0e-0a1b2c3d4e5f-[0-9a-f]{12}$/);
    expect(repositoryMountDir('/m', repo({}))).toBe(a);
    expect(repositoryMountDir('/m', repo({ address: 'nas2:/export/backups' }))).not.toBe(a);
    expect(repositoryMountDir('/m', repo({ mountOptions: 'vers=3' }))).not.toBe(a);
    expect(repositoryMountDir('/m', repo({ encryptedCredentials: 'v1:x:y:z' }))).toBe(a);
    expect(() => repositoryMountDir('/m', repo({ repositoryId: '../etc' }))).toThrow(/bad repository id/);
  });
});

describe('RepositoryMounter (scripted mount)', () => {
  let root: string;
  let runner: FakeMountRunner;
  let driver: MountDriver;
  const master = SecretBox.fromKey(Buffer.alloc(32, 7));
  const hostBox = master.hostKey();

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'strata-mounter-spec-'));
    runner = new FakeMountRunner();
    driver = new MountDriver(runner);
    jest.spyOn(driver, 'mounts').mockImplementation(async () => runner.table);
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  const mounter = () => new RepositoryMounter(driver, root, (c) => hostBox.decrypt(c), logger);

  it('mounts a cifs repository with a 0600 credentials file that is gone afterwards, and no password anywhere in argv', async () => {
    const password = 'Pa55!word#long-enough';
    const cifs = repo({ type: 'cifs', address: '//fs1/backups', mountOptions: 'username=strata', encryptedCredentials: hostBox.encrypt(`password=${password}`) });
    const m = mounter();
    const mounted = await m.acquire(cifs);
    expect(mounted.root).toBe(repositoryMountDir(root, cifs));
    expect(runner.calls).toHaveLength(1);
    const call = runner.calls[0];
    expect(call.program).toBe('mount');
    expect(call.args.slice(0, 2)).toEqual(['-t', 'cifs']);
    expect(call.args.slice(-3)).toEqual(['--', '//fs1/backups', mounted.root]);
    expect(call.args.join(' ')).not.toContain(password);
    expect(call.files.credentials).toEqual({ content: `password=${password}\n`, mode: 0o600 });
    expect(call.options.redact).toEqual([password]);
    const file = /credentials=([^,]+)/.exec(call.args[3])![1];
    expect(existsSync(file)).toBe(false);
    await mounted.release();
    expect(runner.calls.map((c) => [c.program, ...c.args])[1]).toEqual(['umount', '--', mounted.root]);
    expect(existsSync(mounted.root)).toBe(false);
  });

  it('mounts a cephfs repository with a secretfile', async () => {
    const key = 'AQBSdFhbAAAAABAAc3RyYXRhLXRlc3Qta2V5LXZhbHVlPT0=';
    const ceph = repo({ type: 'cephfs', address: 'mon1:/backups', mountOptions: 'name=strata', encryptedCredentials: hostBox.encrypt(`secret=${key}`) });
    await mounter().withRepository(ceph, async () => undefined);
    expect(runner.calls[0].args.slice(0, 2)).toEqual(['-t', 'ceph']);
    expect(runner.calls[0].args.join(' ')).not.toContain(key);
    expect(runner.calls[0].files.secretfile).toEqual({ content: `${key}\n`, mode: 0o600 });
    expect(runner.calls[1].program).toBe('umount');
  });

  it('shares one mount among concurrent jobs and unmounts after the last one', async () => {
    const m = mounter();
    const [a, b, c] = await Promise.all([m.acquire(repo({})), m.acquire(repo({})), m.acquire(repo({}))]);
    expect(runner.calls.filter((x) => x.program === 'mount')).toHaveLength(1);
    expect([...m.holders().values()]).toEqual([3]);
    await a.release();
    await a.release(); // a second release of the same hold changes nothing
    await b.release();
    expect(runner.calls.filter((x) => x.program === 'umount')).toHaveLength(0);
    await c.release();
    expect(runner.calls.filter((x) => x.program === 'umount')).toHaveLength(1);
    expect(m.holders().size).toBe(0);
    // and mounts again for the next job
    await (await m.acquire(repo({}))).release();
    expect(runner.calls.map((x) => x.program)).toEqual(['mount', 'umount', 'mount', 'umount']);
  });

  it('reuses a mount that is already there (an earlier agent left it)', async () => {
    const dir = repositoryMountDir(root, repo({}));
    runner.table.push({ mountPoint: dir, fsType: 'nfs4', source: 'nas1:/export/backups', propagation: [] });
    const mounted = await mounter().acquire(repo({}));
    expect(runner.calls).toHaveLength(0);
    await mounted.release();
    expect(runner.calls.map((x) => [x.program, ...x.args])).toEqual([['umount', '--', dir]]);
  });

  it('uses a local repository where it is, mounting nothing', async () => {
    const mounted = await mounter().acquire(repo({ type: 'local', address: '/srv/backups' }));
    expect(mounted.root).toBe('/srv/backups');
    await mounted.release();
    expect(runner.calls).toHaveLength(0);
  });

  it('fails a mount cleanly: nothing held, the next attempt mounts again', async () => {
    const m = mounter();
    runner.failMount = 'mount: /m: cannot mount nas1:/export/backups: permission denied';
    await expect(m.acquire(repo({}))).rejects.toThrow(/permission denied/);
    expect(m.holders().size).toBe(0);
    runner.failMount = null;
    await (await m.acquire(repo({}))).release();
    expect(runner.table).toEqual([]);
  });

  it('binds the mount root onto itself and makes it shared when its mount is private, and leaves a shared one alone', async () => {
    runner.table.push({ mountPoint: '/', fsType: 'ext4', source: '/dev/vda', propagation: [] });
    await mounter().prepare();
    expect(runner.calls.map((x) => [x.program, ...x.args])).toEqual([
      ['mount', '--bind', '--', root, root],
      ['mount', '--make-shared', '--', root],
    ]);
    runner.calls = [];
    runner.table = [{ mountPoint: '/', fsType: 'ext4', source: '/dev/vda', propagation: ['shared:1'] }];
    await mounter().prepare();
    expect(runner.calls).toEqual([]);
  });
});

describe('hostKeyCredentials', () => {
  it('opens credentials sealed with the host key, names the key file when it is missing or wrong', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'strata-hostkey-spec-'));
    try {
      const master = SecretBox.fromKey(Buffer.alloc(32, 9));
      const file = join(dir, 'host.key');
      expect(() => hostKeyCredentials(file)(master.hostKey().encrypt('password=x'))).toThrow(/host key .*host\.key does not exist.*strata keys host/);
      master.hostKey().writeKeyFile(file);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(hostKeyCredentials(file)(master.hostKey().encrypt('password=x'))).toBe('password=x');
      // Sealed with the master key itself: a host cannot open it.
      expect(() => hostKeyCredentials(file)(master.encrypt('password=x'))).toThrow(/not the host key/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('mountRepository without a mounter', () => {
  const repository = (type: 'local' | 'nfs'): RepositoryAccess => ({ repositoryId: 'r1', type, address: type === 'local' ? '/srv/backups' : 'nas:/strata', mountOptions: '', encryptedCredentials: null });

  it('uses a local repository where it is', async () => {
    const mounted = await mountRepository(null, repository('local'));
    expect(mounted.root).toBe('/srv/backups');
    await mounted.release();
  });

  it('refuses any other type, naming it', async () => {
    await expect(mountRepository(null, repository('nfs'))).rejects.toThrow(new UnsupportedRepositoryError('repository type nfs needs the RepositoryMounter'));
  });
});
