import { CommandFailedError, CommandFailure } from './errors';
import { MountBusyError, MountDriver, MountError, mountArgs, NotMountedError, parseMountInfo } from './mount.driver';
import { ProcessRunner, RunOptions, RunResult } from './process-runner';

class FakeRunner implements ProcessRunner {
  calls: { program: string; args: string[]; options: RunOptions }[] = [];
  constructor(private readonly answer: { exitCode?: number; stderr?: string } = {}) {}

  async run(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    this.calls.push({ program, args: [...args], options });
    const exitCode = this.answer.exitCode ?? 0;
    if (exitCode !== 0) {
      const f: CommandFailure = { program, args: [...args], exitCode, stderr: this.answer.stderr ?? '', stdout: '', timedOut: false, canceled: false, signal: null, reason: 'exit', durationMs: 1 };
      throw new CommandFailedError(f);
    }
    return { program, args: [...args], exitCode, stdout: '', stderr: '', durationMs: 1 };
  }
}

describe('mountArgs', () => {
  it('builds -t TYPE -o OPTIONS -- SOURCE TARGET for nfs, cifs and ceph', () => {
    expect(mountArgs({ fsType: 'nfs', source: 'nas1:/export/backups', target: '/m/r1', options: ['vers=4.1', 'noatime'] })).toEqual([
      '-t', 'nfs', '-o', 'vers=4.1,noatime', '--', 'nas1:/export/backups', '/m/r1',
    ]);
    expect(mountArgs({ fsType: 'cifs', source: '//fs1/backups', target: '/m/r2', options: ['username=strata', 'credentials=/dev/shm/strata-tmp-1/credentials'] })).toEqual([
      '-t', 'cifs', '-o', 'username=strata,credentials=/dev/shm/strata-tmp-1/credentials', '--', '//fs1/backups', '/m/r2',
    ]);
    expect(mountArgs({ fsType: 'ceph', source: 'mon1,mon2:6789:/backups', target: '/m/r3', options: ['name=strata', 'secretfile=/dev/shm/x/secret'] })).toEqual([
      '-t', 'ceph', '-o', 'name=strata,secretfile=/dev/shm/x/secret', '--', 'mon1,mon2:6789:/backups', '/m/r3',
    ]);
  });

  it('leaves -o out without options, and builds a bind mount', () => {
    expect(mountArgs({ fsType: 'nfs', source: 'h:/x', target: '/m/a', options: [] })).toEqual(['-t', 'nfs', '--', 'h:/x', '/m/a']);
    expect(mountArgs({ fsType: null, bind: true, source: '/srv/repo', target: '/m/b', options: [] })).toEqual(['--bind', '--', '/srv/repo', '/m/b']);
  });

  it.each([
    ['a source that looks like an option', { source: '-oexec' }],
    ['a source with whitespace', { source: 'h:/x y' }],
    ['a target with a newline', { target: '/m/a\n/etc' }],
    ['a relative target', { target: 'm/a' }],
    ['an option holding a comma', { options: ['a,b'] }],
    ['an option that looks like one', { options: ['-x'] }],
    ['an option with a space', { options: ['a= b'] }],
    ['a bad file system type', { fsType: 'nfs -o x' }],
    ['no file system type without bind', { fsType: null }],
  ])('refuses %s', (_what, change) => {
    expect(() => mountArgs({ fsType: 'nfs', source: 'h:/x', target: '/m/a', options: [], ...change })).toThrow(/refusing to mount/);
  });
});

describe('parseMountInfo', () => {
  it('reads mount points, types, sources and propagation, with octal escapes', () => {
    const text = [
      '22 27 0:21 / /proc rw,relatime - proc proc rw',
      '42 27 254:0 /tmp/r /var/lib/strata/mounts rw,relatime shared:1 - ext4 /dev/vda rw',
      '60 42 0:40 / /var/lib/strata/mounts/r\\0401 rw,relatime shared:2 master:1 - nfs4 nas1:/export\\040x rw,vers=4.1',
      'garbage',
      '',
    ].join('\n');
    expect(parseMountInfo(text)).toEqual([
      { mountPoint: '/proc', fsType: 'proc', source: 'proc', propagation: [] },
      { mountPoint: '/var/lib/strata/mounts', fsType: 'ext4', source: '/dev/vda', propagation: ['shared:1'] },
      { mountPoint: '/var/lib/strata/mounts/r 1', fsType: 'nfs4', source: 'nas1:/export x', propagation: ['shared:2', 'master:1'] },
    ]);
  });
});

describe('MountDriver (scripted)', () => {
  it('runs mount with the built arguments, the C locale, a timeout and the strings to redact', async () => {
    const runner = new FakeRunner();
    await new MountDriver(runner).mount({ fsType: 'nfs', source: 'h:/x', target: '/m/a', options: ['ro'] }, { redact: ['s3cret-value'] });
    expect(runner.calls).toEqual([
      { program: 'mount', args: ['-t', 'nfs', '-o', 'ro', '--', 'h:/x', '/m/a'], options: expect.objectContaining({ timeoutMs: 120_000, redact: ['s3cret-value'], env: { LC_ALL: 'C', LANG: 'C' } }) },
    ]);
  });

  it('unmounts (lazily on request) and makes a mount shared', async () => {
    const runner = new FakeRunner();
    const driver = new MountDriver(runner);
    await driver.unmount('/m/a');
    await driver.unmount('/m/b', { lazy: true });
    await driver.makeShared('/m');
    expect(runner.calls.map((c) => [c.program, ...c.args])).toEqual([
      ['umount', '--', '/m/a'],
      ['umount', '-l', '--', '/m/b'],
      ['mount', '--make-shared', '--', '/m'],
    ]);
  });

  it('types the failures: not mounted, busy, anything else', async () => {
    await expect(new MountDriver(new FakeRunner({ exitCode: 32, stderr: 'umount: /m/a: not mounted.' })).unmount('/m/a')).rejects.toBeInstanceOf(NotMountedError);
    await expect(new MountDriver(new FakeRunner({ exitCode: 32, stderr: 'umount: /m/a: target is busy.' })).unmount('/m/a')).rejects.toBeInstanceOf(MountBusyError);
    const other = new MountDriver(new FakeRunner({ exitCode: 32, stderr: "mount: /m/a: unknown filesystem type 'nfs'." }));
    await expect(other.mount({ fsType: 'nfs', source: 'h:/x', target: '/m/a', options: [] })).rejects.toThrow(MountError);
    await expect(other.mount({ fsType: 'nfs', source: 'h:/x', target: '/m/a', options: [] })).rejects.toThrow(/unknown filesystem type 'nfs'/);
  });

  it('finds the mount on top of a mount point from the mount table', async () => {
    const runner = new FakeRunner();
    const driver = new MountDriver(runner, { mountInfoPath: '/dev/null' });
    jest.spyOn(driver, 'mounts').mockResolvedValue([
      { mountPoint: '/m/a', fsType: 'nfs4', source: 'h:/x', propagation: [] },
      { mountPoint: '/m/a', fsType: 'tmpfs', source: 'tmpfs', propagation: [] },
    ]);
    expect(await driver.mountAt('/m/a')).toMatchObject({ fsType: 'tmpfs' });
    expect(await driver.mountAt('/m/b')).toBeNull();
  });
});
