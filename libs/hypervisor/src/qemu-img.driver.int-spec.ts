import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CommandFailedError, ImageNotFoundError, QemuImgError } from './errors';
import { supportsDirectIo } from './direct-io';
import { ExecaProcessRunner } from './process-runner';
import { QemuImgDriver } from './qemu-img.driver';

/** qemu-img on small images in a temp directory. */
describe('QemuImgDriver (real qemu-img)', () => {
  const runner = new ExecaProcessRunner();
  const qemuImg = new QemuImgDriver(runner);
  const MiB = 1024 * 1024;
  let dir: string;

  /** Test-only: writes a pattern into an image nobody holds open. */
  const write = (path: string, pattern: number, offset: number, length: number) =>
    runner.run('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x${pattern.toString(16)} ${offset} ${length}`, path]);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-hv-qemu-img-'));
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('creates and describes a qcow2 image', async () => {
    const path = join(dir, 'plain.qcow2');
    await qemuImg.create(path, { format: 'qcow2', sizeBytes: 64 * MiB });
    const info = await qemuImg.info(path, { format: 'qcow2' });
    expect(info).toMatchObject({
      filename: path,
      format: 'qcow2',
      virtualSizeBytes: 64 * MiB,
      clusterSizeBytes: 65536,
      backingFilename: null,
      fullBackingFilename: null,
      dirty: false,
      corrupt: false,
      compressionType: 'zlib',
      bitmaps: [],
    });
    expect(info.actualSizeBytes).toBeGreaterThan(0);
    const check = await qemuImg.check(path);
    expect(check).toMatchObject({ clean: true, corruptions: 0, leaks: 0, format: 'qcow2' });
  });

  it('builds a chain with a relative backing file, flattens it and compares', async () => {
    await mkdir(join(dir, 'b1'));
    await mkdir(join(dir, 'b2'));
    const base = join(dir, 'b1', 'vda.qcow2');
    const top = join(dir, 'b2', 'vda.qcow2');
    await qemuImg.create(base, { format: 'qcow2', sizeBytes: 64 * MiB });
    await write(base, 0x11, 0, MiB);
    await qemuImg.create(top, { format: 'qcow2', backingFile: '../b1/vda.qcow2', backingFormat: 'qcow2' });
    await write(top, 0x22, 4 * MiB, 512 * 1024);

    const info = await qemuImg.info(top);
    expect(info.virtualSizeBytes).toBe(64 * MiB); // from the backing file
    expect(info.backingFilename).toBe('../b1/vda.qcow2');
    // qemu joins the image's directory and the relative name without normalising it
    expect(resolve(info.fullBackingFilename!)).toBe(base);
    expect(info.backingFormat).toBe('qcow2');
    const chain = await qemuImg.info(top, { backingChain: true });
    expect(chain.map((i) => resolve(i.filename))).toEqual([top, base]);

    const flat = join(dir, 'flat.raw');
    await qemuImg.convert(top, flat, { sourceFormat: 'qcow2', outputFormat: 'raw' });
    expect(await qemuImg.compare(flat, top, { formatA: 'raw', formatB: 'qcow2' })).toBe(true);
    const diff = await qemuImg.compareDetailed(base, top);
    expect(diff).toMatchObject({ identical: false, mismatchOffset: 4 * MiB });
    expect(await qemuImg.compare(base, top)).toBe(false);

    // what the top image holds alone: only its own 512 KiB
    const own = (await qemuImg.map(top)).filter((e) => e.depth === 0 && e.data);
    expect(own.reduce((n, e) => n + e.length, 0)).toBe(512 * 1024);
  });

  it('compresses an incremental with zstd and keeps its backing file (-B)', async () => {
    const top = join(dir, 'b2', 'vda.qcow2');
    const side = join(dir, 'b2', 'vda.qcow2.compressing');
    await qemuImg.convert(top, side, {
      sourceFormat: 'qcow2',
      outputFormat: 'qcow2',
      compress: true,
      compressionType: 'zstd',
      coroutines: 2,
      rateLimitBytesPerSec: 1024 * MiB,
      backingFile: '../b1/vda.qcow2',
      backingFormat: 'qcow2',
    });
    const info = await qemuImg.info(side);
    expect(info).toMatchObject({ compressionType: 'zstd', backingFilename: '../b1/vda.qcow2', backingFormat: 'qcow2' });
    expect(await qemuImg.compare(top, side)).toBe(true);
    const own = (await qemuImg.map(side)).filter((e) => e.depth === 0 && e.data);
    expect(own.reduce((n, e) => n + e.length, 0)).toBe(512 * 1024);
    expect((await qemuImg.check(side)).clean).toBe(true);
  });

  it('writes through the compress filter what convert -c writes: the same allocation, compressed clusters, backing file and content', async () => {
    const d = join(dir, 'filter, with a comma');
    await mkdir(join(d, 'b1'), { recursive: true });
    await mkdir(join(d, 'b2'));
    const base = join(d, 'b1', 'v.qcow2');
    const top = join(d, 'b2', 'v.qcow2');
    await qemuImg.create(base, { format: 'qcow2', sizeBytes: 64 * MiB });
    await write(base, 0x11, 0, 8 * MiB);
    await runner.run('qemu-io', ['-f', 'qcow2', '-c', 'write -z 8M 2M', base]);
    await qemuImg.create(top, { format: 'qcow2', backingFile: '../b1/v.qcow2', backingFormat: 'qcow2' });
    await write(top, 0x22, 2 * MiB, 3 * MiB);
    await runner.run('qemu-io', ['-f', 'qcow2', '-c', 'write -z 6M 1M', top]);
    const shape = async (path: string) => (await qemuImg.map(path)).map(({ start, length, depth, zero, data }) => ({ start, length, depth, zero, data }));

    const cases = [
      { name: 'full, zstd', source: base, options: { compressionType: 'zstd' as const }, backing: null },
      { name: 'full, v2 zlib', source: base, options: { compat: '0.10' as const }, backing: null },
      { name: 'incremental, zstd', source: top, options: { compressionType: 'zstd' as const }, backing: '../b1/v.qcow2' },
    ];
    for (const c of cases) {
      const viaFilter = `${c.source}.filter`;
      const viaC = `${c.source}.c`;
      const backing = c.backing ? { backingFile: c.backing, backingFormat: 'qcow2' } : {};
      await qemuImg.convertCompressed(c.source, viaFilter, { sourceFormat: 'qcow2', sizeBytes: 64 * MiB, coroutines: 1, rateLimitBytesPerSec: 1024 * MiB, ...c.options, ...backing });
      await qemuImg.convert(c.source, viaC, { sourceFormat: 'qcow2', outputFormat: 'qcow2', compress: true, ...c.options, ...backing });
      const [a, b] = [await qemuImg.info(viaFilter), await qemuImg.info(viaC)];
      expect({ case: c.name, compressionType: a.compressionType, compat: a.compat, backing: a.backingFilename, size: a.virtualSizeBytes }).toEqual({
        case: c.name, compressionType: b.compressionType, compat: b.compat, backing: c.backing, size: 64 * MiB,
      });
      expect(a.compressionType).toBe(c.options.compat ? 'zlib' : 'zstd');
      expect(await shape(viaFilter)).toEqual(await shape(viaC));
      const [ca, cb] = [await qemuImg.check(viaFilter), await qemuImg.check(viaC)];
      expect(ca.clean).toBe(true);
      expect(ca.allocatedClusters).toBeGreaterThan(0);
      expect([ca.allocatedClusters, ca.compressedClusters]).toEqual([cb.allocatedClusters, cb.compressedClusters]);
      expect(ca.compressedClusters).toBe(ca.allocatedClusters);
      expect(await qemuImg.compare(c.source, viaFilter)).toBe(true);
    }
  });

  it('adds, lists, clears and removes persistent bitmaps', async () => {
    const path = join(dir, 'bitmaps.qcow2');
    await qemuImg.create(path, { format: 'qcow2', sizeBytes: 16 * MiB });
    await qemuImg.bitmap(path, 'cp1', { op: 'add', granularityBytes: 128 * 1024 });
    await qemuImg.bitmap(path, 'cp2', { op: 'add', disabled: true });
    let bitmaps = (await qemuImg.info(path)).bitmaps;
    expect(bitmaps).toEqual(
      expect.arrayContaining([
        { name: 'cp1', granularity: 128 * 1024, flags: ['auto'], inUse: false, auto: true },
        { name: 'cp2', granularity: 65536, flags: [], inUse: false, auto: false },
      ]),
    );
    await qemuImg.bitmap(path, 'cp1', { op: 'clear' });
    await qemuImg.bitmap(path, 'cp2', { op: 'enable' });
    await qemuImg.bitmap(path, 'cp2', { op: 'merge', source: 'cp1' });
    await qemuImg.bitmap(path, 'cp1', { op: 'remove' });
    bitmaps = (await qemuImg.info(path)).bitmaps;
    expect(bitmaps.map((b) => [b.name, b.auto])).toEqual([['cp2', true]]);
    await expect(qemuImg.bitmap(path, 'nope', { op: 'remove' })).rejects.toBeInstanceOf(QemuImgError);
    await expect(qemuImg.bitmap(path, '-x;rm', { op: 'add' })).rejects.toThrow(/unsafe bitmap name/);
  });

  it('rebases and commits', async () => {
    const a = join(dir, 'rc-base.qcow2');
    const b = join(dir, 'rc-top.qcow2');
    await qemuImg.create(a, { format: 'qcow2', sizeBytes: 8 * MiB });
    await write(a, 0x33, 0, MiB);
    await qemuImg.create(b, { format: 'qcow2', backingFile: 'rc-base.qcow2', backingFormat: 'qcow2' });
    await write(b, 0x44, MiB, MiB);
    const flat = join(dir, 'rc-flat.qcow2');
    await qemuImg.convert(b, flat, { outputFormat: 'qcow2' });

    // safe rebase onto nothing: b becomes standalone with the same content
    const b2 = join(dir, 'rc-top2.qcow2');
    await qemuImg.convert(b, b2, { outputFormat: 'qcow2', backingFile: 'rc-base.qcow2', backingFormat: 'qcow2' });
    await qemuImg.rebase(b2, { backingFile: null, format: 'qcow2' });
    expect((await qemuImg.info(b2)).backingFilename).toBeNull();
    expect(await qemuImg.compare(b2, flat)).toBe(true);

    // commit b into a: a then holds the flattened content
    await qemuImg.commit(b, { format: 'qcow2' });
    expect(await qemuImg.compare(a, flat)).toBe(true);
  });

  it('types failures: missing image, bad exit, timeout', async () => {
    const missing = join(dir, 'missing.qcow2');
    const e = (await qemuImg.info(missing).catch((x: unknown) => x)) as ImageNotFoundError;
    expect(e).toBeInstanceOf(ImageNotFoundError);
    expect(e.exitCode).toBe(1);
    expect(e.stderr).toContain('No such file or directory');
    expect(e.path).toBe(missing);

    // compare exits 2 on an error, which is neither "identical" nor "different"
    const plain = join(dir, 'plain.qcow2');
    const c = (await qemuImg.compare(plain, missing).catch((x: unknown) => x)) as CommandFailedError;
    expect(c).toBeInstanceOf(CommandFailedError);
    expect(c.exitCode).toBe(2);

    // 1 byte/s cannot copy 16 MiB in 300 ms (the first buffer of a few MiB goes at once)
    const src = join(dir, 'slow.qcow2');
    await qemuImg.create(src, { format: 'qcow2', sizeBytes: 32 * MiB });
    await write(src, 0x55, 0, 16 * MiB);
    const t = (await qemuImg
      .convert(src, join(dir, 'slow.out.qcow2'), { outputFormat: 'qcow2', rateLimitBytesPerSec: 1, timeoutMs: 300 })
      .catch((x: unknown) => x)) as CommandFailedError;
    expect(t).toBeInstanceOf(CommandFailedError);
    expect(t.timedOut).toBe(true);

    await expect(qemuImg.create(join(dir, 'x.qcow2'), { format: 'qcow2' })).rejects.toThrow(/sizeBytes or a backing file/);
  });

  it('flattens a chain with direct I/O and out-of-order writes; the O_DIRECT probe leaves no file behind', async () => {
    const base = join(dir, 'dio-base.qcow2');
    const top = join(dir, 'dio-top.qcow2');
    await qemuImg.create(base, { format: 'qcow2', sizeBytes: 16 * MiB });
    await write(base, 0x11, 0, 4 * MiB);
    await qemuImg.create(top, { format: 'qcow2', backingFile: base, backingFormat: 'qcow2' });
    await write(top, 0x22, 2 * MiB, 4 * MiB);
    // Local disks (and tmpfs since Linux 6.6) take O_DIRECT.
    expect(await supportsDirectIo(dir)).toBe(true);
    const flat = join(dir, 'dio-flat.qcow2');
    await qemuImg.convert(top, flat, { sourceFormat: 'qcow2', outputFormat: 'qcow2', coroutines: 16, outOfOrderWrites: true, targetCache: 'none' });
    expect(await qemuImg.compare(top, flat)).toBe(true);
    expect((await qemuImg.info(flat)).backingFilename).toBeNull();

    expect(await supportsDirectIo(join(dir, 'no-such-dir'))).toBe(false);
    expect((await readdir(dir)).filter((f) => f.startsWith('.strata-direct-io-probe'))).toEqual([]);
  });
});
