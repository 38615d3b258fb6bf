import { createHash } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './exec';
import type { GuestWrite, WriteRecorder } from './guest-writes';
import type { TestDomain } from './test-domain';

/**
 * The expected content of a disk: a sparse raw "shadow" file of the disk's virtual size that receives the
 * same writes as the disk, plus immutable labelled copies of it ("the disk as it was at backup 3"), and
 * `qemu-img compare` against any image (qcow2 chains included) as the judge.
 */

/** Deterministic 32-bit generator (xoshiro128**, seeded from SHA-256 of the seed). */
export function createPrng(seed: string | number): () => number {
  const h = createHash('sha256').update(`strata-test/${String(seed)}`).digest();
  let a = h.readUInt32LE(0) | 1;
  let b = h.readUInt32LE(4);
  let c = h.readUInt32LE(8);
  let d = h.readUInt32LE(12);
  return () => {
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** `length` pseudo-random bytes, the same for the same seed. */
export function randomData(seed: string | number, length: number): Buffer {
  const next = createPrng(seed);
  const buf = Buffer.alloc(length);
  let i = 0;
  for (; i + 4 <= length; i += 4) buf.writeUInt32LE(next(), i);
  if (i < length) {
    const last = next();
    for (let k = 0; i < length; i++, k++) buf[i] = (last >>> (8 * k)) & 0xff;
  }
  return buf;
}

export interface CompareResult {
  equal: boolean;
  /** qemu-img's own words, e.g. "Images are identical." or "Content mismatch at offset 2097152!". */
  message: string;
}

export interface CompareOptions {
  /** `qemu-img compare -U`: read images another process holds open (flush a running domain first). */
  forceShare?: boolean;
  /** Format of the image under test (`-F`). Default qcow2; backing files are followed. */
  format?: string;
}

/** `qemu-img compare` of a raw expected image with an image; throws when qemu-img cannot compare (exit >= 2). */
export async function compareImages(expectedRaw: string, imagePath: string, opts: CompareOptions = {}): Promise<CompareResult> {
  const args = ['compare', ...(opts.forceShare ? ['-U'] : []), '-f', 'raw', '-F', opts.format ?? 'qcow2', expectedRaw, imagePath];
  const r = await run('qemu-img', args, { allowFailure: true, timeoutMs: 120_000 });
  const message = `${r.stdout}${r.stderr}`.trim();
  if (r.code === 0) return { equal: true, message };
  if (r.code === 1) return { equal: false, message };
  throw new Error(`qemu-img ${args.join(' ')} failed (exit ${r.code}): ${message}`);
}

const LABEL = /^[A-Za-z0-9][\w.-]*$/;

export class ExpectedImage implements WriteRecorder {
  private readonly snapshots = new Map<string, string>();

  private constructor(
    readonly dir: string,
    readonly sizeBytes: number,
    /** When set, recordWrite refuses writes meant for another disk. */
    readonly target?: string,
  ) {}

  /** The live shadow file: the content the disk must have now. */
  get path(): string {
    return join(this.dir, 'current.raw');
  }

  static async create(opts: { dir: string; sizeBytes: number; target?: string }): Promise<ExpectedImage> {
    await mkdir(opts.dir, { recursive: true });
    const img = new ExpectedImage(opts.dir, opts.sizeBytes, opts.target);
    const fh = await open(img.path, 'wx');
    try {
      await fh.truncate(opts.sizeBytes); // sparse, all zeroes: a fresh qcow2 disk
    } finally {
      await fh.close();
    }
    return img;
  }

  /** A model of a fresh (all-zero) disk of a test domain, kept in the domain's directory. */
  static forDisk(domain: TestDomain, target: string): Promise<ExpectedImage> {
    const disk = domain.disk(target);
    return ExpectedImage.create({ dir: join(domain.dir, 'expected', target), sizeBytes: disk.sizeBytes, target });
  }

  async recordWrite(target: string, w: GuestWrite): Promise<void> {
    if (this.target !== undefined && target !== this.target) {
      throw new Error(`write for '${target}' recorded into the model of '${this.target}'`);
    }
    if ('data' in w) await this.applyData(w.offset, w.data);
    else await this.applyPattern(w);
  }

  applyPattern(w: { offset: number; length: number; pattern: number }): Promise<void> {
    return this.applyData(w.offset, Buffer.alloc(w.length, w.pattern));
  }

  async applyData(offset: number, data: Buffer): Promise<void> {
    if (offset < 0 || offset + data.length > this.sizeBytes) {
      throw new Error(`write [${offset}, ${offset + data.length}) is outside the ${this.sizeBytes}-byte disk`);
    }
    const fh = await open(this.path, 'r+');
    try {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } finally {
      await fh.close();
    }
  }

  /** Keep the current expected content under `label` (sparse copy); returns the copy's path. */
  async snapshot(label: string): Promise<string> {
    if (!LABEL.test(label)) throw new Error(`bad snapshot label '${label}'`);
    if (this.snapshots.has(label)) throw new Error(`snapshot '${label}' exists already`);
    const path = join(this.dir, `${label}.raw`);
    await run('cp', ['--sparse=always', '--reflink=auto', this.path, path]);
    this.snapshots.set(label, path);
    return path;
  }

  /** The raw file of a snapshot; no label: the current shadow. */
  snapshotPath(label?: string): string {
    if (label === undefined) return this.path;
    const p = this.snapshots.get(label);
    if (!p) throw new Error(`no snapshot '${label}' (have ${[...this.snapshots.keys()].join(', ') || 'none'})`);
    return p;
  }

  get labels(): string[] {
    return [...this.snapshots.keys()];
  }

  /** The disk was restored to `label`: from now on the expected content is that snapshot's (plus later writes). */
  async resetTo(label: string): Promise<void> {
    await run('cp', ['--sparse=always', this.snapshotPath(label), this.path]);
  }

  /** Does `imagePath` (qcow2 by default, backing chain followed) hold the content of `label` (default: now)? */
  compareWith(imagePath: string, label?: string, opts: CompareOptions = {}): Promise<CompareResult> {
    return compareImages(this.snapshotPath(label), imagePath, opts);
  }

  /** Compare the domain's disk itself; a running domain is flushed first and read with -U. */
  async compareWithDisk(domain: TestDomain, target: string, label?: string): Promise<CompareResult> {
    const active = await domain.isActive();
    if (active) await domain.flush(target);
    return this.compareWith(await domain.currentSource(target), label, { forceShare: active, format: domain.disk(target).format });
  }

  async dispose(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** One ExpectedImage per disk of a domain; pass it as `expected` to the guest-write functions. */
export class ExpectedDisks implements WriteRecorder {
  private constructor(private readonly images: ReadonlyMap<string, ExpectedImage>) {}

  static async forDomain(domain: TestDomain): Promise<ExpectedDisks> {
    const images = new Map<string, ExpectedImage>();
    for (const d of domain.disks) images.set(d.target, await ExpectedImage.forDisk(domain, d.target));
    return new ExpectedDisks(images);
  }

  get(target: string): ExpectedImage {
    const img = this.images.get(target);
    if (!img) throw new Error(`no expected image for '${target}'`);
    return img;
  }

  get targets(): string[] {
    return [...this.images.keys()];
  }

  recordWrite(target: string, w: GuestWrite): Promise<void> {
    return this.get(target).recordWrite(target, w);
  }

  /** Every disk was restored to `label`. */
  async resetTo(label: string): Promise<void> {
    for (const img of this.images.values()) await img.resetTo(label);
  }

  /** Snapshot every disk under the same label. */
  async snapshot(label: string): Promise<void> {
    for (const img of this.images.values()) await img.snapshot(label);
  }

  /** Compare every disk of the domain with its expected content at `label` (default: now). */
  async compareDomain(domain: TestDomain, label?: string): Promise<Record<string, CompareResult>> {
    const out: Record<string, CompareResult> = {};
    for (const [target, img] of this.images) out[target] = await img.compareWithDisk(domain, target, label);
    return out;
  }
}
