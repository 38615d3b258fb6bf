import { randomBytes } from 'node:crypto';
import { mkdir, open, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './exec';
import { createPrng, randomData } from './expected-image';
import type { TestDomain } from './test-domain';

/**
 * "Guest" writes without a guest OS. Running domain: HMP `qemu-io <node> "write ..."` on the node the guest
 * device is attached to (possible because the device has share-rw=true). HMP qemu-io answers nothing useful:
 * its results go to QEMU's stdout, i.e. the domain log, so every write is checked there
 * (`wrote LEN/LEN bytes at offset OFF`). Shut-off domain: `qemu-io -f qcow2 -c 'write ...' <image>`.
 */

export type GuestWrite =
  | { offset: number; length: number; pattern: number }
  /** The data is written through a temp file with `write -s FILE OFFSET LEN`. */
  | { offset: number; data: Buffer };

export function writeLength(w: GuestWrite): number {
  return 'data' in w ? w.data.length : w.length;
}

/** Something that keeps the expected content of disks (ExpectedImage, ExpectedDisks). */
export interface WriteRecorder {
  recordWrite(target: string, write: GuestWrite): Promise<void>;
}

export interface WriteOptions {
  /** Apply the same write to the expected-content model once it succeeded on the disk. */
  expected?: WriteRecorder;
  /** How long to wait for qemu-io's result in the domain log. Default 10 s. */
  logTimeoutMs?: number;
}

const queues = new Map<string, Promise<unknown>>();

/** Writes to one domain run one at a time: each one's result is found by position in the shared log. */
function serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = queues.get(key) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  const settled = next.catch(() => undefined);
  queues.set(key, settled);
  void settled.then(() => {
    if (queues.get(key) === settled) queues.delete(key);
  });
  return next;
}

function checkWrite(domain: TestDomain, target: string, w: GuestWrite): void {
  domain.disk(target); // throws for an unknown target
  const len = writeLength(w);
  if (!Number.isSafeInteger(w.offset) || w.offset < 0) throw new Error(`bad offset ${w.offset}`);
  if (!Number.isSafeInteger(len) || len <= 0) throw new Error(`bad length ${len}`);
  if ('pattern' in w && (!Number.isInteger(w.pattern) || w.pattern < 0 || w.pattern > 255)) {
    throw new Error(`pattern must be a byte, got ${w.pattern}`);
  }
  // Writes past the end of the disk are passed on: qemu-io fails them, and the model is then left alone.
}

function successLine(w: GuestWrite): string {
  const len = writeLength(w);
  return `wrote ${len}/${len} bytes at offset ${w.offset}`;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function readFrom(path: string, from: number): Promise<string> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = (await fh.stat()).size;
    const start = size < from ? 0 : from; // rotated by virtlogd
    const buf = Buffer.alloc(size - start);
    await fh.read(buf, 0, buf.length, start);
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}

const TIMESTAMPED = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}/; // libvirt's and QEMU's own (-msg timestamp=on) lines
const STATS = /^[\d.]+ \w*(bytes|B), \d+ ops; /; // qemu-io's statistics line after "wrote ..."

/** Wait for qemu-io's verdict on one write in the domain log (appended after `from`). */
async function awaitLogResult(domain: TestDomain, from: number, expect: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lines: string[] = [];
  for (;;) {
    const text = await readFrom(domain.qemuLogPath, from);
    lines = text.split('\n').slice(0, -1); // complete lines only
    if (lines.some((l) => l === expect)) return;
    const failure = lines.find((l) => l && !TIMESTAMPED.test(l) && !STATS.test(l) && !l.startsWith('wrote '));
    if (failure) throw new Error(`qemu-io on ${domain.name}: ${failure} (expected "${expect}")`);
    if (Date.now() > deadline) {
      throw new Error(
        `no qemu-io result for "${expect}" in ${domain.qemuLogPath} after ${timeoutMs} ms; new log lines: ${JSON.stringify(lines)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function withDataFile<T>(domain: TestDomain, w: GuestWrite, fn: (cmd: string) => Promise<T>): Promise<T> {
  if (!('data' in w)) return fn(`write -P 0x${w.pattern.toString(16).padStart(2, '0')} ${w.offset} ${w.length}`);
  const dir = join(domain.dir, 'io');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${randomBytes(6).toString('hex')}.bin`);
  if (/[\s"'\\]/.test(file)) throw new Error(`data file path unusable in an HMP string: ${file}`);
  await writeFile(file, w.data);
  try {
    return await fn(`write -s ${file} ${w.offset} ${w.data.length}`);
  } finally {
    await rm(file, { force: true });
  }
}

async function writeRunning(domain: TestDomain, target: string, w: GuestWrite, timeoutMs: number): Promise<void> {
  await withDataFile(domain, w, async (cmd) => {
    const from = await fileSize(domain.qemuLogPath);
    let node = await domain.nodeName(target);
    let out = await domain.hmp(`qemu-io ${node} "${cmd}"`);
    if (/Cannot find device|Permission conflict/i.test(out)) {
      // The attached node changed (domain restarted, backup job inserted or removed its filter): look it up again.
      node = await domain.nodeName(target, { refresh: true });
      out = await domain.hmp(`qemu-io ${node} "${cmd}"`);
    }
    if (out.trim()) throw new Error(`qemu-io ${node} "${cmd}" on ${domain.name}: ${out.trim()}`);
    await awaitLogResult(domain, from, successLine(w), timeoutMs);
  });
}

async function writeStopped(domain: TestDomain, target: string, w: GuestWrite): Promise<void> {
  const file = await domain.currentSource(target);
  const format = domain.disk(target).format;
  await withDataFile(domain, w, async (cmd) => {
    const r = await run('qemu-io', ['-f', format, '-c', cmd, file], { allowFailure: true });
    if (r.code !== 0 || !r.stdout.split('\n').includes(successLine(w))) {
      throw new Error(`qemu-io -f ${format} -c '${cmd}' ${file} failed (exit ${r.code}): ${(r.stdout + r.stderr).trim()}`);
    }
  });
}

/** One write to the disk `target` of `domain` (running or shut off), then to the expected model if given. */
export async function guestWrite(domain: TestDomain, target: string, w: GuestWrite, opts: WriteOptions = {}): Promise<void> {
  checkWrite(domain, target, w);
  return serialized(domain.name, async () => {
    if (await domain.isActive()) await writeRunning(domain, target, w, opts.logTimeoutMs ?? 10_000);
    else await writeStopped(domain, target, w);
    if (opts.expected) await opts.expected.recordWrite(target, w);
  });
}

export function writePattern(
  domain: TestDomain,
  target: string,
  w: { offset: number; length: number; pattern: number },
  opts?: WriteOptions,
): Promise<void> {
  return guestWrite(domain, target, { offset: w.offset, length: w.length, pattern: w.pattern }, opts);
}

export function writeData(domain: TestDomain, target: string, offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
  return guestWrite(domain, target, { offset, data }, opts);
}

/** Writes `randomData(seed, length)` at `offset`; returns the data. */
export async function writeRandom(
  domain: TestDomain,
  target: string,
  w: { offset: number; length: number; seed: string | number },
  opts?: WriteOptions,
): Promise<Buffer> {
  const data = randomData(w.seed, w.length);
  await guestWrite(domain, target, { offset: w.offset, data }, opts);
  return data;
}

/**
 * `count` distinct, block-aligned blocks chosen from `seed`, each filled with random data (or `pattern`);
 * what an incremental backup test writes between two backups. Returns the writes in offset order.
 */
export async function writeScattered(
  domain: TestDomain,
  target: string,
  w: { seed: string | number; count: number; blockSize?: number; pattern?: number },
  opts?: WriteOptions,
): Promise<GuestWrite[]> {
  const blockSize = w.blockSize ?? 64 * 1024;
  const offsets = scatteredOffsets(w.seed, domain.disk(target).sizeBytes, w.count, blockSize);
  const writes: GuestWrite[] = offsets.map((offset, i) =>
    w.pattern === undefined
      ? { offset, data: randomData(`${w.seed}/${i}`, blockSize) }
      : { offset, length: blockSize, pattern: w.pattern },
  );
  for (const write of writes) await guestWrite(domain, target, write, opts);
  return writes;
}

/** Deterministic distinct block offsets in [0, diskSize), sorted. */
export function scatteredOffsets(seed: string | number, diskSize: number, count: number, blockSize: number): number[] {
  const blocks = Math.floor(diskSize / blockSize);
  if (!Number.isInteger(count) || count < 0 || count > blocks) {
    throw new Error(`cannot pick ${count} blocks of ${blockSize} bytes from a ${diskSize}-byte disk`);
  }
  const next = createPrng(`offsets/${seed}`);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(next() % blocks);
  return [...chosen].sort((a, b) => a - b).map((b) => b * blockSize);
}
