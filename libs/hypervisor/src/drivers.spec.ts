import { readFileSync } from 'node:fs';
import {
  CheckpointNotFoundError,
  CommandFailedError,
  CommandFailure,
  DomainBusyError,
  DomainJobFailedError,
  DomainNotFoundError,
  DomainNotRunningError,
  ImageLockedError,
  VirshError,
} from './errors';
import { ProcessRunner, RunOptions, RunResult } from './process-runner';
import { imagePathArg, QemuImgDriver } from './qemu-img.driver';
import { parseDomJobInfo, VirshDriver } from './virsh.driver';

/** Drivers against a scripted runner: argument arrays and output parsing, no processes. */
type Answer = { stdout?: string; exitCode?: number; stderr?: string } | ((args: readonly string[]) => { stdout?: string; exitCode?: number; stderr?: string });

class FakeRunner implements ProcessRunner {
  calls: { program: string; args: string[]; options: RunOptions; files: Record<string, string> }[] = [];
  constructor(private readonly answers: Record<string, Answer>) {}

  async run(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    // temp files only exist during the call: read them now
    const files: Record<string, string> = {};
    args.forEach((a, i) => {
      if (/^--(file|xmlfile|backupxml|checkpointxml)$/.test(args[i - 1] ?? '')) files[args[i - 1]] = readFileSync(a, 'utf8');
    });
    this.calls.push({ program, args: [...args], options, files });
    const sub = program === 'virsh' ? args[3] : args[0];
    const key = Object.keys(this.answers).find((k) => k === sub || args.join(' ').includes(k));
    const spec = key === undefined ? {} : this.answers[key];
    const a = typeof spec === 'function' ? spec(args) : spec;
    const exitCode = a.exitCode ?? 0;
    if (exitCode !== 0 && !(options.acceptExitCodes ?? []).includes(exitCode)) {
      const f: CommandFailure = {
        program, args: [...args], exitCode, stderr: a.stderr ?? '', stdout: a.stdout ?? '', timedOut: false, canceled: false, signal: null, reason: 'exit', durationMs: 1,
      };
      throw new CommandFailedError(f);
    }
    return { program, args: [...args], exitCode, stdout: a.stdout ?? '', stderr: a.stderr ?? '', durationMs: 1 };
  }
}

describe('VirshDriver (scripted)', () => {
  it('passes the URI, explicit option names and the C locale', async () => {
    const runner = new FakeRunner({ domstate: { stdout: 'shut off (destroyed)' } });
    const virsh = new VirshDriver('qemu+ssh://h/system', runner);
    expect(await virsh.domainState('-rf')).toEqual({ state: 'shutoff', reason: 'destroyed' });
    expect(runner.calls[0].args).toEqual(['--quiet', '-c', 'qemu+ssh://h/system', 'domstate', '--domain', '-rf', '--reason']);
    expect(runner.calls[0].options.env).toMatchObject({ LC_ALL: 'C' });
  });

  it('lists domains with states from domstats, names with spaces included', async () => {
    const runner = new FakeRunner({
      list: { stdout: '9141d01c-ecbd-43c4-a5b2-c9f43967b44f i-2-34-VM\nAAAAAAAA-ecbd-43c4-a5b2-c9f43967b44f my vm\n' },
      domstats: { stdout: "Domain: 'i-2-34-VM'\n  state.state=1\n  state.reason=1\n\nDomain: 'my vm'\n  state.state=5\n  state.reason=2\n" },
    });
    expect(await new VirshDriver(undefined, runner).listDomains()).toEqual([
      { uuid: '9141d01c-ecbd-43c4-a5b2-c9f43967b44f', name: 'i-2-34-VM', state: 'running', stateReason: 1 },
      { uuid: 'aaaaaaaa-ecbd-43c4-a5b2-c9f43967b44f', name: 'my vm', state: 'shutoff', stateReason: 2 },
    ]);
  });

  it('parses checkpoint lists with parents and creation times', async () => {
    const runner = new FakeRunner({
      '--name': { stdout: 'cp1\ncp 2\n' },
      '--parent': {
        stdout: ' Name   Creation Time               Parent\n--------------------------------------------\n cp 2   2026-11-22 11:11:56 +0100   cp1\n cp1    2026-11-22 11:11:26 +0000\n',
      },
    });
    expect(await new VirshDriver(undefined, runner).checkpointList('vm')).toEqual([
      { name: 'cp1', parent: null, creationTime: new Date('2026-11-22T11:11:26Z') },
      { name: 'cp 2', parent: 'cp1', creationTime: new Date('2026-11-22T10:11:56Z') },
    ]);
  });

  it('hands backup and checkpoint XML over in files, with --reuse-external', async () => {
    const runner = new FakeRunner({ 'backup-begin': {} });
    await new VirshDriver(undefined, runner).backupBegin('vm', '<domainbackup/>', '<domaincheckpoint/>');
    const call = runner.calls[0];
    expect(call.args.slice(3, 6)).toEqual(['backup-begin', '--domain', 'vm']);
    expect(call.args).toContain('--reuse-external');
    expect(call.files).toEqual({ '--backupxml': '<domainbackup/>', '--checkpointxml': '<domaincheckpoint/>' });
    await new VirshDriver(undefined, runner).backupBegin('vm', '<domainbackup/>', null, { reuseExternal: false });
    expect(runner.calls[1].args).not.toContain('--checkpointxml');
    expect(runner.calls[1].args).not.toContain('--reuse-external');
  });

  it('types failures from stderr', async () => {
    const fail = (stderr: string) => ({ exitCode: 1, stderr });
    const cases: [string, new (...a: never[]) => Error][] = [
      ["error: failed to get domain 'x'", DomainNotFoundError],
      ["error: Domain checkpoint not found: no domain checkpoint with matching name 'c'", CheckpointNotFoundError],
      ['error: Requested operation is not valid: domain is not running', DomainNotRunningError],
      ['error: Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainBackupBegin)', DomainBusyError],
      ['error: something else', VirshError],
    ];
    for (const [stderr, type] of cases) {
      const virsh = new VirshDriver(undefined, new FakeRunner({ 'checkpoint-dumpxml': fail(stderr) }));
      const e = await virsh.checkpointDumpXml('x', 'c').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(type);
      expect(e).toBeInstanceOf(CommandFailedError);
      expect((e as CommandFailedError).stderr).toBe(stderr);
    }
  });

  it('waits for a job: progress, then the completed statistics; a failed job throws', async () => {
    let polls = 0;
    const runner = new FakeRunner({
      domjobinfo: (args) => {
        if (args.includes('--completed')) return { stdout: 'Job type: 3\n\noperation: 9\ntime_elapsed: 122\ndisk_total: 67108864\ndisk_processed: 67108864\ndisk_remaining: 0\nsuccess: 1\n' };
        polls++;
        return { stdout: polls < 3 ? `Job type: 2\n\noperation: 9\ndisk_total: 100\ndisk_processed: ${polls * 40}\n` : 'Job type: 0\n' };
      },
    });
    const seen: number[] = [];
    const done = await new VirshDriver(undefined, runner).waitForJob('vm', { pollIntervalMs: 1, onProgress: (i) => seen.push(i.dataProcessed!) });
    expect(seen).toEqual([40, 80]);
    expect(done).toMatchObject({ type: 'completed', operation: 'backup', dataTotal: 67108864, dataProcessed: 67108864, timeElapsedMs: 122, success: true });
    expect(runner.calls.at(-1)!.args).toEqual(expect.arrayContaining(['--completed', '--anystats', '--rawstats']));

    const failing = new FakeRunner({
      domjobinfo: (args) => ({ stdout: args.includes('--completed') ? 'Job type: 4\n\noperation: 9\nsuccess: 0\nerrmsg: No space left on device\n' : 'Job type: 0\n' }),
    });
    const e = (await new VirshDriver(undefined, failing).waitForJob('vm').catch((x: unknown) => x)) as DomainJobFailedError;
    expect(e).toBeInstanceOf(DomainJobFailedError);
    expect(e.info).toEqual({ type: 'failed', errorMessage: 'No space left on device' });
  });

  it('keeps its first interval for growAfterMs before it grows', async () => {
    const seen: number[] = [];
    let polls = 0;
    const runner = new FakeRunner({
      domjobinfo: (args) => {
        if (args.includes('--completed')) return { stdout: 'Job type: 3\n\noperation: 9\nsuccess: 1\n' };
        seen.push(Date.now());
        return { stdout: ++polls < 12 ? 'Job type: 2\n\noperation: 9\n' : 'Job type: 0\n' };
      },
    });
    await new VirshDriver(undefined, runner).waitForJob('vm', { pollIntervalMs: 10, growAfterMs: 60_000, maxPollIntervalMs: 1000 });
    const gaps = seen.slice(1).map((t, i) => t - seen[i]);
    // Growing by half from 10 ms, eleven gaps would add up to about 1.7 s; at a steady 10 ms, about 0.1 s.
    expect(gaps.reduce((a, b) => a + b, 0)).toBeLessThan(800);
  });

  it('asks at once when woken instead of waiting out its poll interval', async () => {
    let polls = 0;
    const runner = new FakeRunner({
      domjobinfo: (args) => {
        if (args.includes('--completed')) return { stdout: 'Job type: 3\n\noperation: 9\nsuccess: 1\n' };
        return { stdout: ++polls === 1 ? 'Job type: 2\n\noperation: 9\n' : 'Job type: 0\n' };
      },
    });
    const t0 = Date.now();
    const done = await new VirshDriver(undefined, runner).waitForJob('vm', { pollIntervalMs: 60_000, wake: new Promise((r) => setTimeout(r, 20)) });
    expect(done).toMatchObject({ type: 'completed', success: true });
    expect(polls).toBe(2);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('parses raw job statistics of other kinds', () => {
    expect(parseDomJobInfo('Job type: 0\n')).toMatchObject({ type: 'none', operation: null, dataTotal: null, success: null });
    expect(parseDomJobInfo('Job type: 1\n\noperation: 5\ndata_total: 10\ndata_processed: 4\n')).toMatchObject({ type: 'bounded', operation: 'migration-out', dataTotal: 10, dataProcessed: 4 });
    expect(() => parseDomJobInfo('garbage')).toThrow(/cannot parse/);
  });

  it('reads block job info', async () => {
    const runner = new FakeRunner({ blockjob: { stdout: ' type=Block Pull\n bandwidth=4194304\n cur=524288\n end=67108864\n' } });
    expect(await new VirshDriver(undefined, runner).blockJobInfo('vm', 'vda')).toEqual({ type: 'pull', bandwidth: 4194304, cur: 524288, end: 67108864 });
    expect(runner.calls[0].args.slice(3)).toEqual(['blockjob', '--domain', 'vm', '--path', 'vda', '--info', '--raw', '--bytes']);
    const numeric = new FakeRunner({ blockjob: { stdout: ' type=3\n bandwidth=0\n cur=1\n end=2\n' } });
    expect(await new VirshDriver(undefined, numeric).blockJobInfo('vm', 'vda')).toMatchObject({ type: 'commit' });
    const none = new FakeRunner({ blockjob: { stdout: '' } });
    expect(await new VirshDriver(undefined, none).blockJobInfo('vm', 'vda')).toBeNull();
  });
});

describe('QemuImgDriver (scripted)', () => {
  it('never lets a path pass for an option or a protocol', () => {
    expect(imagePathArg('/abs/a:b.qcow2')).toBe('/abs/a:b.qcow2');
    expect(imagePathArg('rel/x.qcow2')).toBe('rel/x.qcow2');
    expect(imagePathArg('-f')).toBe('./-f');
    expect(imagePathArg('json:{"driver":"file"}')).toBe('./json:{"driver":"file"}');
    expect(imagePathArg('nbd:host:10809')).toBe('./nbd:host:10809');
    expect(() => imagePathArg('')).toThrow();
  });

  it('builds create, convert and compare arguments', async () => {
    const runner = new FakeRunner({ compare: { exitCode: 1, stdout: 'Content mismatch at offset 2097152!' } });
    const q = new QemuImgDriver(runner);
    await q.create('/r/b2/v.qcow2', { format: 'qcow2', backingFile: '../b1/v.qcow2', backingFormat: 'qcow2' });
    expect(runner.calls[0].args).toEqual(['create', '-q', '-f', 'qcow2', '-b', '../b1/v.qcow2', '-F', 'qcow2', '/r/b2/v.qcow2']);
    await q.convert('/r/b2/v.qcow2', '/r/b2/v.tmp', {
      outputFormat: 'qcow2', compress: true, compressionType: 'zstd', coroutines: 8, rateLimitBytesPerSec: 1048576, sourceForceShare: true, backingFile: '../b1/v.qcow2', backingFormat: 'qcow2',
    });
    expect(runner.calls[1].args).toEqual([
      'convert', '-q', '-U', '-O', 'qcow2', '-c', '-o', 'compression_type=zstd', '-m', '8', '-r', '1048576', '-B', '../b1/v.qcow2', '-F', 'qcow2', '/r/b2/v.qcow2', '/r/b2/v.tmp',
    ]);
    await expect(q.convert('a', 'b', { outputFormat: 'qcow2', coroutines: 17 })).rejects.toThrow(/1\.\.16/);
    await q.convert('/r/top.qcow2', '/p/v.tmp', { sourceFormat: 'qcow2', outputFormat: 'qcow2', coroutines: 16, outOfOrderWrites: true, targetCache: 'none' });
    expect(runner.calls.at(-1)!.args).toEqual(['convert', '-q', '-f', 'qcow2', '-O', 'qcow2', '-m', '16', '-W', '-t', 'none', '/r/top.qcow2', '/p/v.tmp']);
    expect(await q.compareDetailed('/a', '/b', { forceShare: true })).toEqual({ identical: false, message: 'Content mismatch at offset 2097152!', mismatchOffset: 2097152 });
    expect(runner.calls.at(-1)!.args).toEqual(['compare', '-U', '/a', '/b']);
  });

  it('writes a compressed copy through the compress filter, and falls back to -c where qemu-img has no such filter', async () => {
    const runner = new FakeRunner({});
    const q = new QemuImgDriver(runner);
    await q.convertCompressed('/r/b2/v.qcow2', '/r/b2/v,1.part', {
      sourceFormat: 'qcow2', sizeBytes: 4 << 20, compressionType: 'zstd', coroutines: 1, rateLimitBytesPerSec: 1048576, backingFile: '../b1/v.qcow2', backingFormat: 'qcow2',
    });
    expect(runner.calls.map((c) => c.args)).toEqual([
      ['create', '-q', '-f', 'qcow2', '-b', '../b1/v.qcow2', '-F', 'qcow2', '-o', 'compression_type=zstd', '/r/b2/v,1.part', String(4 << 20)],
      [
        'convert', '-q', '-n', '-f', 'qcow2', '-m', '1', '-r', '1048576', '-B', '../b1/v.qcow2', '-F', 'qcow2', '/r/b2/v.qcow2',
        '--target-image-opts', 'driver=compress,file.driver=qcow2,file.file.driver=file,file.file.filename=/r/b2/v,,1.part',
      ],
    ]);
    await q.convertCompressed('/r/b1/v.qcow2', '/r/b1/v.part', { sourceFormat: 'qcow2', sizeBytes: 1 << 20, compat: '0.10' });
    expect(runner.calls.slice(2).map((c) => c.args)).toEqual([
      ['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', '/r/b1/v.part', String(1 << 20)],
      ['convert', '-q', '-n', '-f', 'qcow2', '--target-is-zero', '/r/b1/v.qcow2', '--target-image-opts', 'driver=compress,file.driver=qcow2,file.file.driver=file,file.file.filename=/r/b1/v.part'],
    ]);
    await expect(q.convertCompressed('a', 'b', { sourceFormat: 'qcow2', sizeBytes: 1, coroutines: 0 })).rejects.toThrow(/1\.\.16/);

    const old = new FakeRunner({ 'driver=compress': { exitCode: 1, stderr: "qemu-img: Could not open 'driver=compress,...': Unknown driver 'compress'" } });
    const q2 = new QemuImgDriver(old);
    const options = { sourceFormat: 'qcow2', sizeBytes: 1 << 20, compressionType: 'zstd', coroutines: 2 } as const;
    await q2.convertCompressed('/r/v.qcow2', '/r/v.part', options);
    const plain = ['convert', '-q', '-f', 'qcow2', '-O', 'qcow2', '-c', '-o', 'compression_type=zstd', '-m', '2', '/r/v.qcow2', '/r/v.part'];
    expect(old.calls.map((c) => c.args[0])).toEqual(['create', 'convert', 'convert']);
    expect(old.calls[2].args).toEqual(plain);
    await q2.convertCompressed('/r/v.qcow2', '/r/v.part', options); // remembered: -c straight away
    expect(old.calls.slice(3).map((c) => c.args)).toEqual([plain]);

    // Any other failure of the filter's convert is the caller's, not a reason for -c.
    const failing = new QemuImgDriver(new FakeRunner({ 'driver=compress': { exitCode: 1, stderr: 'qemu-img: error while writing at byte 0: No space left on device' } }));
    await expect(failing.convertCompressed('/r/v.qcow2', '/r/v.part', options)).rejects.toThrow(/No space left/);
  });

  it('types a lock failure', async () => {
    const runner = new FakeRunner({ info: { exitCode: 1, stderr: `qemu-img: Could not open '/d.qcow2': Failed to get shared "write" lock\nIs another process using the image [/d.qcow2]?` } });
    const e = (await new QemuImgDriver(runner).info('/d.qcow2').catch((x: unknown) => x)) as ImageLockedError;
    expect(e).toBeInstanceOf(ImageLockedError);
    expect(e.path).toBe('/d.qcow2');
  });

  it('parses bitmaps from info', async () => {
    const runner = new FakeRunner({
      info: {
        stdout: JSON.stringify({
          'virtual-size': 67108864, filename: '/d.qcow2', format: 'qcow2', 'actual-size': 1314816, 'cluster-size': 65536, 'dirty-flag': false,
          'format-specific': { type: 'qcow2', data: { compat: '1.1', 'compression-type': 'zlib', bitmaps: [{ flags: ['in-use', 'auto'], name: 'cp1', granularity: 65536 }], corrupt: false } },
        }),
      },
    });
    const info = await new QemuImgDriver(runner).info('/d.qcow2', { forceShare: true, format: 'qcow2' });
    expect(runner.calls[0].args).toEqual(['info', '--output=json', '-U', '-f', 'qcow2', '/d.qcow2']);
    expect(info.bitmaps).toEqual([{ name: 'cp1', granularity: 65536, flags: ['in-use', 'auto'], inUse: true, auto: true }]);
  });
});
