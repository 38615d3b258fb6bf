import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { CommandFailedError, CompressedConvertOptions, ImageInfo, QemuImgDriver } from '@strata/hypervisor';
import { AgentReport, FinalizeCompressionJobData, StartCompressionJobData } from '@strata/jobs';
import { CompressionExecutor } from './compression-executor';

const quiet = { debug: () => undefined, log: () => undefined, warn: () => undefined, error: () => undefined };

/** qemu-img without qemu: convert writes a marker file; info and check answer what the test says. */
class FakeQemuImg {
  converts: { source: string; target: string; options: CompressedConvertOptions }[] = [];
  convertImpl: (source: string, target: string, options: CompressedConvertOptions) => Promise<void> = async (_s, target) => writeFile(target, 'compressed!');
  backing: string | null = null;
  compat = '1.1';

  async info(path: string): Promise<ImageInfo> {
    return {
      filename: path,
      format: 'qcow2',
      virtualSizeBytes: 1 << 20,
      actualSizeBytes: null,
      clusterSizeBytes: 65536,
      backingFilename: this.backing,
      fullBackingFilename: null,
      backingFormat: this.backing ? 'qcow2' : null,
      dirty: false,
      encrypted: false,
      compressionType: path.endsWith('.qcow2') && !this.converts.length ? 'zlib' : 'zstd',
      compat: this.compat,
      corrupt: false,
      bitmaps: [],
    };
  }

  async check() {
    return { clean: true, checkErrors: 0, corruptions: 0, leaks: 0 };
  }

  async convertCompressed(source: string, target: string, options: CompressedConvertOptions): Promise<void> {
    this.converts.push({ source, target, options });
    await this.convertImpl(source, target, options);
  }
}

describe('CompressionExecutor', () => {
  let root: string;
  let qemu: FakeQemuImg;
  let reports: AgentReport[];
  let executor: CompressionExecutor;
  const file = 'vm/chain/b2/v1.qcow2';

  const startJob = (over: Partial<StartCompressionJobData> = {}): StartCompressionJobData => ({
    jobId: 'job-1',
    backupId: 'b2',
    vmId: 'vm',
    attempt: 1,
    repository: { repositoryId: 'r', type: 'local', address: root, mountOptions: '', encryptedCredentials: null },
    deadline: new Date(Date.now() + 60_000).toISOString(),
    timeoutSeconds: 60,
    volumes: [{ volumeId: 'v1', file }],
    library: 'zstd',
    coroutines: 3,
    rateLimitMBps: 2,
    minimumFreeStorage: 1,
    backupSizeBytes: 1000,
    ...over,
  });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'strata-compress-unit-'));
    await mkdir(join(root, 'vm/chain/b2'), { recursive: true });
    await writeFile(join(root, file), 'original');
    await writeFile(join(root, 'vm/chain/b2/manifest.json'), JSON.stringify({ backupId: 'b2' }));
    qemu = new FakeQemuImg();
    reports = [];
    executor = new CompressionExecutor(qemu as unknown as QemuImgDriver, async (r) => void reports.push(r), 'host-1', quiet);
  });

  afterEach(() => rm(root, { recursive: true, force: true }));

  const files = async () => (await readdir(join(root, 'vm/chain/b2'))).sort();

  it('Starting: converts into a per-attempt part file with the settings and the same backing file, then names it .zside', async () => {
    qemu.backing = '../b1/v1.qcow2';
    await executor.start(startJob());
    expect(qemu.converts).toHaveLength(1);
    const c = qemu.converts[0];
    expect(basename(c.target)).toBe('v1.qcow2.a1.zpart');
    expect(c.options).toMatchObject({ sourceFormat: 'qcow2', sizeBytes: 1 << 20, compressionType: 'zstd', coroutines: 3, rateLimitBytesPerSec: 2 * 1024 * 1024, backingFile: '../b1/v1.qcow2', backingFormat: 'qcow2' });
    expect(await files()).toEqual(['manifest.json', 'v1.qcow2', 'v1.qcow2.zside']);
    expect(await readFile(join(root, file), 'utf8')).toBe('original');
    const side = await stat(join(root, `${file}.zside`), { bigint: true });
    expect(reports).toEqual([
      {
        type: 'CompressionSucceeded',
        vmId: 'vm',
        backupId: 'b2',
        jobId: 'job-1',
        attempt: 1,
        hostName: 'host-1',
        outcome: { kind: 'sideFilesWritten', compressionType: 'zstd', volumes: [{ volumeId: 'v1', file, sideFile: `${file}.zside`, sideBytes: expect.any(Number), sideInode: side.ino.toString(), originalBytes: expect.any(Number) }] },
        at: expect.any(String),
      },
    ]);
  });

  it('Starting: zlib when the offering says so, or for a qcow2 v2 image (kept v2); no -r below 1', async () => {
    await executor.start(startJob({ library: 'zlib', rateLimitMBps: 0 }));
    expect(qemu.converts[0].options).toMatchObject({ compressionType: 'zlib' });
    expect(qemu.converts[0].options.rateLimitBytesPerSec).toBeUndefined();
    qemu.compat = '0.10';
    await rm(join(root, `${file}.zside`)); // else attempt 2 keeps attempt 1's side file
    await executor.start(startJob({ attempt: 2 }));
    expect(qemu.converts[1].options).toMatchObject({ compat: '0.10' });
    expect(qemu.converts[1].options.compressionType).toBeUndefined();
  });

  it('Starting: falls back to zlib when qemu-img refuses zstd', async () => {
    qemu.convertImpl = async (_s, target, options) => {
      if (options.compressionType === 'zstd') {
        throw new CommandFailedError({ program: 'qemu-img', args: [], exitCode: 1, stderr: "Invalid parameter 'zstd'", stdout: '', timedOut: false, canceled: false, signal: null, reason: 'exit', durationMs: 1 });
      }
      await writeFile(target, 'z');
    };
    await executor.start(startJob());
    expect(qemu.converts.map((c) => c.options.compressionType)).toEqual(['zstd', 'zlib']);
    expect(reports[0]).toMatchObject({ type: 'CompressionSucceeded', outcome: { compressionType: 'zlib' } });
  });

  it('Starting: too little free space fails with the reason, before anything is written', async () => {
    await executor.start(startJob({ minimumFreeStorage: 100, backupSizeBytes: 1e15 }));
    expect(qemu.converts).toEqual([]);
    expect(reports).toEqual([expect.objectContaining({ type: 'CompressionFailed', reason: expect.stringMatching(/^not enough free space on the repository: \d+ bytes free, 100000000000000000 needed \(backup\.compression\.minimum\.free\.storage 100 x backup size 1000000000000000 bytes\)$/) })]);
    expect(await files()).toEqual(['manifest.json', 'v1.qcow2']);
  });

  it('Starting: an attempt past its deadline is killed, reports the timeout and leaves nothing behind', async () => {
    qemu.convertImpl = (_s, target, options) =>
      new Promise((_resolve, reject) => {
        void writeFile(target, 'partial');
        options.signal!.addEventListener('abort', () => reject(new Error('qemu-img was canceled')));
      });
    await executor.start(startJob({ deadline: new Date(Date.now() + 300).toISOString(), timeoutSeconds: 7 }));
    expect(reports).toEqual([expect.objectContaining({ type: 'CompressionFailed', reason: 'the attempt exceeded backup.compression.timeout (7 s); qemu-img was killed' })]);
    expect(await files()).toEqual(['manifest.json', 'v1.qcow2']);
    expect(await readFile(join(root, file), 'utf8')).toBe('original');
  });

  it('Starting: an attempt whose deadline passed before it began is not run', async () => {
    await executor.start(startJob({ deadline: new Date(Date.now() - 1000).toISOString() }));
    expect(qemu.converts).toEqual([]);
    expect(reports[0]).toMatchObject({ type: 'CompressionFailed', reason: expect.stringContaining('deadline') });
  });

  it('Starting: cancel stops a running attempt; a retried attempt reuses a complete side file', async () => {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    qemu.convertImpl = (_s, _t, options) =>
      new Promise((_resolve, reject) => {
        started();
        options.signal!.addEventListener('abort', () => reject(new Error('canceled')));
      });
    const attempt = executor.start(startJob());
    await running;
    executor.cancel({ jobId: 'job-1', attempt: 1 });
    await attempt;
    expect(reports[0]).toMatchObject({ type: 'CompressionFailed', reason: 'cancelled: the backup is being deleted' });

    qemu.convertImpl = async (_s, target) => writeFile(target, 'z');
    await executor.start(startJob({ attempt: 2 }));
    const converts = qemu.converts.length;
    await executor.start(startJob({ attempt: 3 })); // e.g. the report of attempt 2 was lost
    expect(qemu.converts.length).toBe(converts);
    expect(reports[2]).toMatchObject({ type: 'CompressionSucceeded', attempt: 3 });
  });

  it('Finalizing: swaps the side file in, records it in the manifest, and recognises its own earlier swap', async () => {
    await executor.start(startJob());
    const side = (reports[0] as Extract<AgentReport, { type: 'CompressionSucceeded' }>).outcome as { volumes: FinalizeCompressionJobData['volumes'] };
    const job: FinalizeCompressionJobData = { ...startJob(), jobId: 'job-2', volumes: side.volumes };
    await executor.finalize(job);
    expect(await files()).toEqual(['manifest.json', 'v1.qcow2']);
    expect(await readFile(join(root, file), 'utf8')).toBe('compressed!');
    expect(JSON.parse(await readFile(join(root, 'vm/chain/b2/manifest.json'), 'utf8'))).toMatchObject({ backupId: 'b2', compression: { volumes: [{ volumeId: 'v1' }] } });
    expect(reports[1]).toMatchObject({ type: 'CompressionSucceeded', jobId: 'job-2', outcome: { kind: 'finalized', volumes: [{ volumeId: 'v1', compressedBytes: expect.any(Number) }] } });
    // The same attempt again (the agent died after the rename): the file is the side file, by inode.
    await executor.finalize({ ...job, attempt: 2 });
    expect(reports[2]).toMatchObject({ type: 'CompressionSucceeded', attempt: 2, outcome: { kind: 'finalized' } });
  });

  it('Finalizing: refuses a side file that is not the one the Starting job wrote, and leaves the original', async () => {
    await writeFile(join(root, `${file}.zside`), 'someone else');
    await executor.finalize({ ...startJob(), volumes: [{ volumeId: 'v1', file, sideFile: `${file}.zside`, sideBytes: 1, sideInode: '1', originalBytes: 1 }] });
    expect(reports[0]).toMatchObject({ type: 'CompressionFailed', reason: expect.stringContaining('is not the one the Starting job wrote') });
    expect(await readFile(join(root, file), 'utf8')).toBe('original');
  });

  describe('discarding the side files of an ended job', () => {
    const discardJob = (files: string[]) => ({ jobId: 'job-2', backupId: 'b2', vmId: 'vm', repository: startJob().repository, files });

    it('removes the .zside and every .zpart next to the files, nothing else, and reports what was there', async () => {
      await writeFile(join(root, `${file}.zside`), 'side');
      await writeFile(join(root, `${file}.a1.zpart`), 'part 1');
      await writeFile(join(root, `${file}.a3.zpart`), 'part 3');
      await writeFile(join(root, 'vm/chain/b2/v2.qcow2.zside'), 'another volume, not asked for');
      await executor.discard(discardJob([file]));
      expect(await files()).toEqual(['manifest.json', 'v1.qcow2', 'v2.qcow2.zside']);
      expect(await readFile(join(root, file), 'utf8')).toBe('original');
      expect(reports).toEqual([
        { type: 'CompressionSideFilesDiscarded', vmId: 'vm', backupId: 'b2', jobId: 'job-2', hostName: 'host-1', removed: [`${file}.a1.zpart`, `${file}.a3.zpart`, `${file}.zside`], at: expect.any(String) },
      ]);
      // Again (e.g. a redelivery): nothing is left, and it says so.
      await executor.discard(discardJob([file]));
      expect(reports[1]).toMatchObject({ type: 'CompressionSideFilesDiscarded', removed: [] });
    });

    it('a backup directory that is gone (the backup was deleted) has nothing left; nothing is created', async () => {
      await executor.discard(discardJob(['vm/chain/gone/v1.qcow2']));
      expect(reports[0]).toMatchObject({ type: 'CompressionSideFilesDiscarded', removed: [] });
      expect(await readdir(join(root, 'vm/chain'))).toEqual(['b2']);
    });

    it('refuses a file outside the repository and reports nothing', async () => {
      const outside = await mkdtemp(join(tmpdir(), 'strata-outside-'));
      try {
        await writeFile(join(outside, 'x.qcow2.zside'), 'not ours');
        await expect(executor.discard(discardJob([`../${basename(outside)}/x.qcow2`]))).rejects.toThrow(/not inside the repository/);
        expect(await readdir(outside)).toEqual(['x.qcow2.zside']);
        expect(reports).toEqual([]);
      } finally {
        await rm(outside, { recursive: true, force: true });
      }
    });

    it('stops an attempt of the job still running here, which removes what it wrote', async () => {
      let release: () => void = () => undefined;
      qemu.convertImpl = async (_s, target, options) => {
        await writeFile(target, 'half');
        await new Promise<void>((r) => {
          release = r;
          options.signal?.addEventListener('abort', () => r());
        });
      };
      const attempt = executor.start(startJob({ jobId: 'job-2' }));
      await new Promise((r) => setTimeout(r, 50));
      await executor.discard(discardJob([file]));
      release();
      await attempt;
      // The stopped attempt and the discard clean up side by side, so either may report first (the
      // management plane takes a stopped attempt's report after its job ended as stale, in any order).
      expect(reports.map((r) => r.type).sort()).toEqual(['CompressionFailed', 'CompressionSideFilesDiscarded']);
      expect(reports.find((r) => r.type === 'CompressionFailed')).toMatchObject({ reason: 'cancelled: the compression job has ended' });
      expect(await files()).toEqual(['manifest.json', 'v1.qcow2']);
    });
  });
});
