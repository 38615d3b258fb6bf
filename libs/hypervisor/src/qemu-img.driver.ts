import { CommandFailedError, HypervisorError, ImageLockedError, ImageNotFoundError, OutputParseError, QemuImgError } from './errors';
import { ProcessRunner, RunOptions, RunResult } from './process-runner';

/** Typed `qemu-img`: argument arrays, JSON output parsed here, failures typed. */

export type ImageFormat = 'qcow2' | 'raw' | (string & {});

export interface QcowBitmap {
  name: string;
  granularity: number;
  /** qemu's flags: `in-use` (an image open for writing owns it, or it was not stored cleanly), `auto` (recording). */
  flags: string[];
  inUse: boolean;
  auto: boolean;
}

export interface ImageInfo {
  filename: string;
  format: string;
  virtualSizeBytes: number;
  /** Bytes used on the host file system; null when qemu-img cannot tell. */
  actualSizeBytes: number | null;
  clusterSizeBytes: number | null;
  /** The backing file as written in the image (may be relative to the image's directory). */
  backingFilename: string | null;
  /** The backing file as qemu resolved it (relative to the current directory if the image path was). */
  fullBackingFilename: string | null;
  backingFormat: string | null;
  dirty: boolean;
  encrypted: boolean;
  /** qcow2 only: `zlib` or `zstd`. */
  compressionType: string | null;
  /** qcow2 only: the format version, `0.10` (v2) or `1.1` (v3); a v2 image cannot take zstd. */
  compat?: string | null;
  /** qcow2 only: the image is marked corrupt. */
  corrupt: boolean | null;
  /** qcow2 persistent dirty bitmaps; empty for other formats. */
  bitmaps: QcowBitmap[];
}

export interface ImageCheck {
  filename: string;
  format: string;
  checkErrors: number;
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number | null;
  totalClusters: number | null;
  allocatedClusters: number | null;
  fragmentedClusters: number | null;
  compressedClusters: number | null;
  /** No errors, corruptions or leaks. */
  clean: boolean;
}

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset: number | null;
}

export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface InfoOptions extends CallOptions {
  /** `-U`: read an image another process (a running QEMU) holds open. Its metadata may be stale. */
  forceShare?: boolean;
  /** `-f`: the expected format. Give it whenever known: probing a raw image is unsafe. */
  format?: ImageFormat;
}

export type CreateOptions = CallOptions & {
  format: ImageFormat;
  /** Required without a backing file; with one, defaults to the backing file's size. */
  sizeBytes?: number;
  clusterSizeBytes?: number;
  preallocation?: 'off' | 'metadata' | 'falloc' | 'full';
  compressionType?: 'zlib' | 'zstd';
  /** qcow2: `compat=0.10` (v2) or `1.1` (v3, qemu-img's default). */
  compat?: '0.10' | '1.1';
  /** Do not open the backing file (`-u`); then `sizeBytes` is required. */
  unsafeBacking?: boolean;
} & (
    | { backingFile?: undefined; backingFormat?: undefined }
    /** Relative backing paths are relative to the new image's directory, and are stored as given. */
    | { backingFile: string; backingFormat: ImageFormat }
  );

export type ConvertOptions = CallOptions & {
  sourceFormat?: ImageFormat;
  outputFormat: ImageFormat;
  /** `-c`: compressed clusters (qcow2). */
  compress?: boolean;
  compressionType?: 'zlib' | 'zstd';
  /** qcow2 output: `compat=0.10` or `1.1` (default: qemu-img's, 1.1). */
  compat?: '0.10' | '1.1';
  /** `-m`: parallel coroutines (1..16). */
  coroutines?: number;
  /** `-W`: allow out-of-order writes (faster, target unusable until done). */
  outOfOrderWrites?: boolean;
  /**
   * `-t`: the target's cache mode. `none` (O_DIRECT) keeps a large copy out of the page cache, so it does
   * not wait behind the kernel's write-back of dirty pages and is on disk when convert returns; the
   * target's file system must support O_DIRECT (see supportsDirectIo).
   */
  targetCache?: 'none' | 'writeback' | 'unsafe';
  /** `-r`: limit in bytes per second. */
  rateLimitBytesPerSec?: number;
  /** `-U` on the source. */
  sourceForceShare?: boolean;
  /** `-n`: the target exists already (not created by convert). */
  targetExists?: boolean;
  /** `--bitmaps`: copy persistent bitmaps too (qcow2 to qcow2). */
  copyBitmaps?: boolean;
  clusterSizeBytes?: number;
} & (
    | { backingFile?: undefined; backingFormat?: undefined }
    /**
     * `-B`/`-F`: the output gets this backing file, which must hold the same content as the source's
     * backing chain; only what the source's top image holds is written (keeps an incremental an incremental).
     */
    | { backingFile: string; backingFormat: ImageFormat }
  );

export type CompressedConvertOptions = CallOptions & {
  sourceFormat: ImageFormat;
  /** The target's virtual size: the source's. */
  sizeBytes: number;
  /** Absent with `compat: '0.10'`, which knows only zlib. */
  compressionType?: 'zlib' | 'zstd';
  compat?: '0.10' | '1.1';
  /** `-m`: parallel coroutines of convert (1..16). */
  coroutines?: number;
  /** `-r`: limit in bytes per second. */
  rateLimitBytesPerSec?: number;
} & (
    | { backingFile?: undefined; backingFormat?: undefined }
    /** As `-B`/`-F` of convert: the target gets this backing file and only what the source's top image holds. */
    | { backingFile: string; backingFormat: ImageFormat }
  );

export interface CompareOptions extends CallOptions {
  forceShare?: boolean;
  formatA?: ImageFormat;
  formatB?: ImageFormat;
  /** `-s`: images of different size or allocation are different. */
  strict?: boolean;
}

export interface CompareResult {
  identical: boolean;
  /** qemu-img's words, e.g. `Content mismatch at offset 2097152!`. */
  message: string;
  mismatchOffset: number | null;
}

export type BitmapOperation =
  | { op: 'add'; granularityBytes?: number; disabled?: boolean }
  | { op: 'remove' }
  | { op: 'clear' }
  | { op: 'enable' }
  | { op: 'disable' }
  /** Merge bitmap `source` (of `sourceFile`, default the same image) into the bitmap. */
  | { op: 'merge'; source: string; sourceFile?: string; sourceFormat?: ImageFormat };

export interface RebaseOptions extends CallOptions {
  format?: ImageFormat;
  /** New backing file; `null` removes it (the image becomes standalone, data copied in unless unsafe). */
  backingFile: string | null;
  backingFormat?: ImageFormat;
  /** `-u`: only rewrite the backing file name, copy nothing (the new backing must hold the same data). */
  unsafe?: boolean;
  forceShare?: boolean;
}

export interface CommitOptions extends CallOptions {
  format?: ImageFormat;
  /** Commit down to this image of the chain (default: the immediate backing file). */
  base?: string;
  /** `-d`: leave the top image as it is (otherwise emptied). */
  drop?: boolean;
  rateLimitBytesPerSec?: number;
}

export interface QemuImgDriverOptions {
  /** Timeout of quick commands (info, create, bitmap, map). Default 60 s. Long ones have none unless given. */
  quickTimeoutMs?: number;
  /** The program; default `qemu-img`. */
  program?: string;
}

/**
 * A path as a qemu-img argument: never taken for an option (`-x`) or a protocol (`nbd:`, `json:`),
 * which qemu recognises by a colon before the first slash.
 */
export function imagePathArg(path: string): string {
  if (path === '') throw new HypervisorError('empty image path');
  if (path.includes('\0')) throw new HypervisorError('NUL in image path');
  const colon = path.indexOf(':');
  const slash = path.indexOf('/');
  if (path.startsWith('-') || (colon >= 0 && (slash < 0 || colon < slash))) return `./${path}`;
  return path;
}

function assertBitmapName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(name) || name.length > 1023) throw new HypervisorError(`unsafe bitmap name ${JSON.stringify(name)}`);
}

function positiveInt(name: string, v: number): string {
  if (!Number.isSafeInteger(v) || v <= 0) throw new HypervisorError(`${name} must be a positive integer, got ${v}`);
  return String(v);
}

function coroutinesArg(v: number): string {
  if (!Number.isInteger(v) || v < 1 || v > 16) throw new HypervisorError(`coroutines must be 1..16, got ${v}`);
  return String(v);
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

export function parseImageInfo(json: unknown): ImageInfo {
  if (!json || typeof json !== 'object') throw new HypervisorError('qemu-img info: not an object');
  const o = json as Record<string, unknown>;
  const specific = (o['format-specific'] ?? {}) as { type?: string; data?: Record<string, unknown> };
  const data = specific.data ?? {};
  const rawBitmaps = Array.isArray(data.bitmaps) ? (data.bitmaps as Record<string, unknown>[]) : [];
  const virtualSize = num(o['virtual-size']);
  if (virtualSize === null || typeof o.format !== 'string') throw new HypervisorError('qemu-img info: no virtual-size or format');
  return {
    filename: str(o.filename) ?? '',
    format: o.format,
    virtualSizeBytes: virtualSize,
    actualSizeBytes: num(o['actual-size']),
    clusterSizeBytes: num(o['cluster-size']),
    backingFilename: str(o['backing-filename']),
    fullBackingFilename: str(o['full-backing-filename']),
    backingFormat: str(o['backing-filename-format']),
    dirty: o['dirty-flag'] === true,
    encrypted: o.encrypted === true,
    compressionType: specific.type === 'qcow2' ? str(data['compression-type']) : null,
    compat: specific.type === 'qcow2' ? str(data.compat) : null,
    corrupt: specific.type === 'qcow2' && typeof data.corrupt === 'boolean' ? data.corrupt : null,
    bitmaps: rawBitmaps.map((b) => {
      const flags = Array.isArray(b.flags) ? b.flags.filter((f): f is string => typeof f === 'string') : [];
      return { name: str(b.name) ?? '', granularity: num(b.granularity) ?? 0, flags, inUse: flags.includes('in-use'), auto: flags.includes('auto') };
    }),
  };
}

export function parseImageCheck(json: unknown): ImageCheck {
  if (!json || typeof json !== 'object') throw new HypervisorError('qemu-img check: not an object');
  const o = json as Record<string, unknown>;
  const n = (k: string) => num(o[k]) ?? 0;
  const r: ImageCheck = {
    filename: str(o.filename) ?? '',
    format: str(o.format) ?? '',
    checkErrors: n('check-errors'),
    corruptions: n('corruptions'),
    leaks: n('leaks'),
    corruptionsFixed: n('corruptions-fixed'),
    leaksFixed: n('leaks-fixed'),
    imageEndOffset: num(o['image-end-offset']),
    totalClusters: num(o['total-clusters']),
    allocatedClusters: num(o['allocated-clusters']),
    fragmentedClusters: num(o['fragmented-clusters']),
    compressedClusters: num(o['compressed-clusters']),
    clean: false,
  };
  r.clean = r.checkErrors === 0 && r.corruptions === 0 && r.leaks === 0;
  return r;
}

export class QemuImgDriver {
  private readonly quickTimeoutMs: number;
  private readonly program: string;
  /** False once this qemu-img turned out to lack the `compress` filter or `--target-is-zero` (QEMU < 5.0). */
  private compressFilter: boolean | null = null;

  constructor(
    private readonly runner: ProcessRunner,
    options: QemuImgDriverOptions = {},
  ) {
    this.quickTimeoutMs = options.quickTimeoutMs ?? 60_000;
    this.program = options.program ?? 'qemu-img';
  }

  private async exec(args: string[], subject: string, call: CallOptions, defaults: RunOptions = {}): Promise<RunResult> {
    try {
      return await this.runner.run(this.program, args, {
        ...defaults,
        timeoutMs: call.timeoutMs ?? defaults.timeoutMs,
        signal: call.signal,
        env: { LC_ALL: 'C', LANG: 'C' },
      });
    } catch (e) {
      if (!(e instanceof CommandFailedError) || e.reason !== 'exit') throw e;
      const f = e.failure();
      if (/Failed to get (shared )?"(write|consistent read)" lock/i.test(f.stderr)) throw new ImageLockedError(subject, f);
      if (/Could not open .*No such file or directory/i.test(f.stderr)) throw new ImageNotFoundError(subject, f);
      throw new QemuImgError(f);
    }
  }

  private parseJson(r: RunResult, what: string): unknown {
    try {
      return JSON.parse(r.stdout);
    } catch {
      throw new OutputParseError(this.program, what, r.stdout);
    }
  }

  /** `qemu-img info --output=json`; with `backingChain`, the image followed by its backing files. */
  info(path: string, options: InfoOptions & { backingChain: true }): Promise<ImageInfo[]>;
  info(path: string, options?: InfoOptions & { backingChain?: false }): Promise<ImageInfo>;
  async info(path: string, options: InfoOptions & { backingChain?: boolean } = {}): Promise<ImageInfo | ImageInfo[]> {
    const args = ['info', '--output=json'];
    if (options.backingChain) args.push('--backing-chain');
    if (options.forceShare) args.push('-U');
    if (options.format) args.push('-f', options.format);
    args.push(imagePathArg(path));
    const r = await this.exec(args, path, options, { timeoutMs: this.quickTimeoutMs });
    const json = this.parseJson(r, 'info');
    try {
      return options.backingChain ? (json as unknown[]).map(parseImageInfo) : parseImageInfo(json);
    } catch (e) {
      throw new OutputParseError(this.program, `info: ${(e as Error).message}`, r.stdout);
    }
  }

  async create(path: string, options: CreateOptions): Promise<void> {
    const args = ['create', '-q', '-f', options.format];
    if (options.backingFile !== undefined) args.push('-b', imagePathArg(options.backingFile), '-F', options.backingFormat);
    if (options.unsafeBacking) args.push('-u');
    const o: string[] = [];
    if (options.clusterSizeBytes !== undefined) o.push(`cluster_size=${positiveInt('clusterSizeBytes', options.clusterSizeBytes)}`);
    if (options.preallocation) o.push(`preallocation=${options.preallocation}`);
    if (options.compressionType) o.push(`compression_type=${options.compressionType}`);
    if (options.compat) o.push(`compat=${options.compat}`);
    if (o.length) args.push('-o', o.join(','));
    args.push(imagePathArg(path));
    if (options.sizeBytes !== undefined) args.push(positiveInt('sizeBytes', options.sizeBytes));
    else if (options.backingFile === undefined) throw new HypervisorError('qemu-img create needs sizeBytes or a backing file');
    await this.exec(args, path, options, { timeoutMs: this.quickTimeoutMs });
  }

  async convert(source: string, target: string, options: ConvertOptions): Promise<void> {
    const args = ['convert', '-q'];
    if (options.sourceForceShare) args.push('-U');
    if (options.sourceFormat) args.push('-f', options.sourceFormat);
    args.push('-O', options.outputFormat);
    if (options.compress) args.push('-c');
    const o: string[] = [];
    if (options.compressionType) o.push(`compression_type=${options.compressionType}`);
    if (options.compat) o.push(`compat=${options.compat}`);
    if (options.clusterSizeBytes !== undefined) o.push(`cluster_size=${positiveInt('clusterSizeBytes', options.clusterSizeBytes)}`);
    if (o.length) args.push('-o', o.join(','));
    if (options.coroutines !== undefined) args.push('-m', coroutinesArg(options.coroutines));
    if (options.outOfOrderWrites) args.push('-W');
    if (options.targetCache) args.push('-t', options.targetCache);
    if (options.rateLimitBytesPerSec !== undefined) args.push('-r', positiveInt('rateLimitBytesPerSec', options.rateLimitBytesPerSec));
    if (options.backingFile !== undefined) args.push('-B', imagePathArg(options.backingFile), '-F', options.backingFormat);
    if (options.targetExists) args.push('-n');
    if (options.copyBitmaps) args.push('--bitmaps');
    args.push(imagePathArg(source), imagePathArg(target));
    await this.exec(args, source, options);
  }

  /**
   * The compressed qcow2 copy of `source` that `convert -c` makes (a cluster that does not shrink is stored
   * as it is, by both), written through QEMU's `compress` filter: `create` makes the target (compression type, compat, backing file),
   * then `convert -n` writes into it (`--target-is-zero` for a new image without a backing file, `-B` with
   * one). Why not `-c`: with it, convert moves one cluster (64 KiB) per request, and each request crosses
   * QEMU's thread pool to be read, compressed and written; through the filter it reads 2 MiB per request
   * and qcow2 compresses that request's clusters in parallel. On 2 GiB of data with one coroutine that took
   * half the time of `-c` with qemu-img's default eight, and less CPU time. A qemu-img without the filter
   * (QEMU < 5.0) gets `-c`, and the driver remembers it.
   */
  async convertCompressed(source: string, target: string, options: CompressedConvertOptions): Promise<void> {
    const backing = options.backingFile !== undefined ? { backingFile: options.backingFile, backingFormat: options.backingFormat } : {};
    if (this.compressFilter !== false) {
      const args = ['convert', '-q', '-n', '-f', options.sourceFormat];
      if (options.coroutines !== undefined) args.push('-m', coroutinesArg(options.coroutines));
      if (options.rateLimitBytesPerSec !== undefined) args.push('-r', positiveInt('rateLimitBytesPerSec', options.rateLimitBytesPerSec));
      if (options.backingFile !== undefined) args.push('-B', imagePathArg(options.backingFile), '-F', options.backingFormat);
      else args.push('--target-is-zero');
      // QemuOpts syntax: a comma inside a value is written twice.
      args.push(imagePathArg(source), '--target-image-opts', `driver=compress,file.driver=qcow2,file.file.driver=file,file.file.filename=${target.replaceAll(',', ',,')}`);
      await this.create(target, { format: 'qcow2', sizeBytes: options.sizeBytes, compressionType: options.compressionType, compat: options.compat, signal: options.signal, ...backing });
      try {
        await this.exec(args, source, options);
        this.compressFilter = true;
        return;
      } catch (e) {
        if (!(e instanceof QemuImgError) || this.compressFilter || !/Unknown driver 'compress'|target-is-zero/.test(e.stderr)) throw e;
        this.compressFilter = false;
      }
    }
    await this.convert(source, target, {
      sourceFormat: options.sourceFormat,
      outputFormat: 'qcow2',
      compress: true,
      compressionType: options.compressionType,
      compat: options.compat,
      coroutines: options.coroutines,
      rateLimitBytesPerSec: options.rateLimitBytesPerSec,
      signal: options.signal,
      timeoutMs: options.timeoutMs,
      ...backing,
    });
  }

  /** True when both images have the same content (exit 0), false when they differ (exit 1). */
  async compare(a: string, b: string, options: CompareOptions = {}): Promise<boolean> {
    return (await this.compareDetailed(a, b, options)).identical;
  }

  async compareDetailed(a: string, b: string, options: CompareOptions = {}): Promise<CompareResult> {
    const args = ['compare'];
    if (options.forceShare) args.push('-U');
    if (options.formatA) args.push('-f', options.formatA);
    if (options.formatB) args.push('-F', options.formatB);
    if (options.strict) args.push('-s');
    args.push(imagePathArg(a), imagePathArg(b));
    const r = await this.exec(args, a, options, { acceptExitCodes: [1] });
    const message = `${r.stdout}\n${r.stderr}`.trim();
    const m = /offset (\d+)/.exec(message);
    return { identical: r.exitCode === 0, message, mismatchOffset: r.exitCode === 1 && m ? Number(m[1]) : null };
  }

  /** `qemu-img check --output=json`; corruptions and leaks are reported, not thrown. */
  async check(path: string, options: CallOptions & { format?: ImageFormat; forceShare?: boolean; repair?: 'leaks' | 'all' } = {}): Promise<ImageCheck> {
    const args = ['check', '--output=json'];
    if (options.forceShare) args.push('-U');
    if (options.format) args.push('-f', options.format);
    if (options.repair) args.push('-r', options.repair);
    args.push(imagePathArg(path));
    // 2: corruptions found, 3: leaks found (both with a JSON report)
    const r = await this.exec(args, path, options, { acceptExitCodes: [2, 3] });
    return parseImageCheck(this.parseJson(r, 'check'));
  }

  /** `qemu-img bitmap`: changes a persistent bitmap of an image nobody holds open. */
  async bitmap(path: string, name: string, operation: BitmapOperation, options: CallOptions & { format?: ImageFormat } = {}): Promise<void> {
    assertBitmapName(name);
    const args = ['bitmap'];
    switch (operation.op) {
      case 'add':
        args.push('--add');
        if (operation.granularityBytes !== undefined) args.push('-g', positiveInt('granularityBytes', operation.granularityBytes));
        if (operation.disabled) args.push('--disable');
        break;
      case 'merge':
        assertBitmapName(operation.source);
        args.push('--merge', operation.source);
        if (operation.sourceFile) {
          args.push('-b', imagePathArg(operation.sourceFile));
          if (operation.sourceFormat) args.push('-F', operation.sourceFormat);
        }
        break;
      default:
        args.push(`--${operation.op}`);
    }
    args.push('-f', options.format ?? 'qcow2', imagePathArg(path), name);
    await this.exec(args, path, options, { timeoutMs: this.quickTimeoutMs });
  }

  async rebase(path: string, options: RebaseOptions): Promise<void> {
    const args = ['rebase', '-q'];
    if (options.forceShare) args.push('-U');
    if (options.format) args.push('-f', options.format);
    if (options.unsafe) args.push('-u');
    args.push('-b', options.backingFile === null ? '' : imagePathArg(options.backingFile));
    if (options.backingFile !== null && options.backingFormat) args.push('-F', options.backingFormat);
    args.push(imagePathArg(path));
    await this.exec(args, path, options);
  }

  async commit(path: string, options: CommitOptions = {}): Promise<void> {
    const args = ['commit', '-q'];
    if (options.format) args.push('-f', options.format);
    if (options.base) args.push('-b', imagePathArg(options.base));
    if (options.drop) args.push('-d');
    if (options.rateLimitBytesPerSec !== undefined) args.push('-r', positiveInt('rateLimitBytesPerSec', options.rateLimitBytesPerSec));
    args.push(imagePathArg(path));
    await this.exec(args, path, options);
  }

  /** `qemu-img map --output=json`: which ranges hold data, and at which depth of the chain. */
  async map(path: string, options: InfoOptions = {}): Promise<MapEntry[]> {
    const args = ['map', '--output=json'];
    if (options.forceShare) args.push('-U');
    if (options.format) args.push('-f', options.format);
    args.push(imagePathArg(path));
    const r = await this.exec(args, path, options, { timeoutMs: this.quickTimeoutMs });
    const json = this.parseJson(r, 'map');
    if (!Array.isArray(json)) throw new OutputParseError(this.program, 'map', r.stdout);
    return (json as Record<string, unknown>[]).map((e) => ({
      start: num(e.start) ?? 0,
      length: num(e.length) ?? 0,
      depth: num(e.depth) ?? 0,
      present: e.present !== false,
      zero: e.zero === true,
      data: e.data === true,
      offset: num(e.offset),
    }));
  }
}
