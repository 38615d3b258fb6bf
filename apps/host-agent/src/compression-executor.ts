import { constants as fsConstants } from 'node:fs';
import { open, readdir, readFile, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { Logger } from '@strata/config';
import { CommandFailedError, CompressedConvertOptions, ImageInfo, QemuImgDriver } from '@strata/hypervisor';
import { AgentReport, CompressedSideFileReport, DiscardSideFilesJobData, FinalizeCompressionJobData, PARTIAL_SIDE_SUFFIX, RepositoryAccess, SIDE_SUFFIX, StartCompressionJobData } from '@strata/jobs';

/** Why an attempt did not succeed, in the words the job list shows (`lasterror`). */
export class CompressionAttemptError extends Error {
  override readonly name = 'CompressionAttemptError';
}

const MiB = 1024 * 1024;

/** How the executor reaches a repository's files (the agent's RepositoryMounter mounts NFS, CIFS, CephFS). */
export interface RepositoryAccessPort {
  withRepository<T>(repo: RepositoryAccess, fn: (root: string) => Promise<T>): Promise<T>;
}

/** Only `local` repositories (a path mounted on every host): for agents and tests without a mounter. */
export const localRepositories: RepositoryAccessPort = {
  withRepository(repo, fn) {
    if (repo.type !== 'local') throw new CompressionAttemptError(`repository type ${repo.type} cannot be mounted here; use a local repository`);
    return fn(repo.address);
  },
};

/** The side file of an attempt while qemu-img writes it: per attempt, so a late attempt can never rename another's file. */
export const partialSideFile = (file: string, attempt: number) => `${file}.a${attempt}${PARTIAL_SIDE_SUFFIX}`;
export const sideFileOf = (file: string) => `${file}${SIDE_SUFFIX}`;

/** Bytes a file occupies on disk (what `qemu-img info` calls actual-size). */
async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

async function inodeOf(path: string): Promise<string | null> {
  return stat(path, { bigint: true }).then(
    (s) => s.ino.toString(),
    () => null,
  );
}

async function fsyncPath(path: string, directory = false): Promise<void> {
  const fh = await open(path, directory ? fsConstants.O_RDONLY | fsConstants.O_DIRECTORY : fsConstants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

type Report = (r: AgentReport) => Promise<void>;

/**
 * KNIB's compression jobs on this host.
 *
 * Starting: checks the repository's free space, then for each volume writes a compressed qcow2 copy (what
 * `qemu-img convert -c` makes, written through QEMU's compress filter) into a side file next to the
 * backup's file (zstd, or zlib when the offering says so or the image cannot take zstd; the same backing
 * file, by the same relative name, so an incremental stays an incremental; `-m` and `-r` from the
 * settings), checks it (`qemu-img check`, virtual size, backing file) and renames it from its per-attempt
 * partial name to `<file>.zside`. Nothing touches the backup's own file; a failure, timeout or
 * cancellation removes what the attempt wrote. A retried attempt reuses side files an earlier attempt
 * completed (the rename to `.zside` is their commit point) and redoes the rest.
 *
 * Finalizing: checks each side file again (the one the Starting job reported: same inode) and renames it
 * over the backup's file, atomically, then syncs the directory. A retried attempt recognises a volume it
 * already swapped by the inode. The manifest then records the compression.
 *
 * Every attempt ends at its deadline: the qemu-img process is killed (and dies with the agent too, see
 * DieWithParentRunner), and the attempt reports a failure.
 *
 * Discarding: a job that ended without compressing (retries used up, or cancelled) may have left side
 * files nothing will swap in; the scheduler sends their backup's files here and every `.zside` and
 * `.zpart` next to them goes (never the backup's own file).
 */
export class CompressionExecutor {
  private readonly running = new Map<string, AbortController>();
  private readonly cancelled = new Set<string>();
  /** False once this host's qemu-img refused zstd. */
  private zstd: boolean | null = null;

  constructor(
    private readonly qemuImg: QemuImgDriver,
    private readonly report: Report,
    private readonly hostName: string,
    private readonly logger: Logger,
    private readonly repositories: RepositoryAccessPort = localRepositories,
  ) {}

  async start(job: StartCompressionJobData): Promise<void> {
    await this.attempt(job, 'Starting', (signal) => this.repositories.withRepository(job.repository, async (root) => {
      const needed = Math.ceil(job.minimumFreeStorage * job.backupSizeBytes);
      const fs = await statfs(root);
      const free = Number(fs.bavail) * Number(fs.bsize);
      if (free < needed) {
        throw new CompressionAttemptError(
          `not enough free space on the repository: ${free} bytes free, ${needed} needed (backup.compression.minimum.free.storage ${job.minimumFreeStorage} x backup size ${job.backupSizeBytes} bytes)`,
        );
      }
      const written: string[] = [];
      let compressionType: 'zstd' | 'zlib' = job.library;
      const sides: CompressedSideFileReport[] = [];
      let convertMs = 0;
      try {
        for (const v of job.volumes) {
          if (signal.aborted) throw signal.reason;
          const file = join(root, v.file);
          const side = sideFileOf(file);
          const original = (await this.qemuImg.info(file, { format: 'qcow2' })) as ImageInfo;
          await this.removeEarlierParts(file, job.attempt);
          let type: 'zstd' | 'zlib';
          if (await this.reusable(side, original)) {
            type = ((await this.qemuImg.info(side, { format: 'qcow2' })) as ImageInfo).compressionType === 'zstd' ? 'zstd' : 'zlib';
            this.logger.log(`compression ${job.jobId} attempt ${job.attempt}: ${v.file} has a complete side file from an earlier attempt; kept`);
          } else {
            await rm(side, { force: true });
            const part = partialSideFile(file, job.attempt);
            written.push(part);
            const t0 = Date.now();
            type = await this.convert(job, file, part, original, signal);
            convertMs += Date.now() - t0;
            await this.verify(part, original);
            await fsyncPath(part);
            if (signal.aborted) throw signal.reason;
            await rename(part, side);
            written.push(side);
          }
          compressionType = type;
          sides.push({ volumeId: v.volumeId, file: v.file, sideFile: `${v.file}${SIDE_SUFFIX}`, sideBytes: await allocatedBytes(side), sideInode: (await inodeOf(side))!, originalBytes: await allocatedBytes(file) });
        }
        await fsyncPath(dirname(join(root, job.volumes[0].file)), true);
      } catch (error) {
        // The backup's files were never touched; what this attempt wrote goes.
        for (const path of written) await rm(path, { force: true }).catch(() => undefined);
        for (const v of job.volumes) await rm(sideFileOf(join(root, v.file)), { force: true }).catch(() => undefined);
        throw error;
      }
      this.logger.log(`compression ${job.jobId} attempt ${job.attempt}: qemu-img convert ran ${(convertMs / 1000).toFixed(1)} s for ${sides.length} volume(s)`);
      return { kind: 'sideFilesWritten' as const, compressionType, volumes: sides };
    }));
  }

  async finalize(job: FinalizeCompressionJobData): Promise<void> {
    await this.attempt(job, 'Finalizing', (signal) => this.repositories.withRepository(job.repository, async (root) => {
      const done: { volumeId: string; compressedBytes: number; uncompressedBytes: number }[] = [];
      let compressionType: string | null = null;
      for (const v of job.volumes) {
        if (signal.aborted) throw signal.reason;
        const file = join(root, v.file);
        const side = join(root, v.sideFile);
        const sideInode = await inodeOf(side);
        if (sideInode === null) {
          // An earlier attempt swapped it already (the file is now the side file the Starting job wrote).
          if ((await inodeOf(file)) !== v.sideInode) throw new CompressionAttemptError(`the side file ${v.sideFile} is missing and ${v.file} is not it`);
        } else {
          if (sideInode !== v.sideInode) throw new CompressionAttemptError(`the side file ${v.sideFile} is not the one the Starting job wrote`);
          const original = (await this.qemuImg.info(file, { format: 'qcow2' })) as ImageInfo;
          await this.verify(side, original);
          if (signal.aborted) throw signal.reason;
          await rename(side, file);
          await fsyncPath(dirname(file), true);
        }
        compressionType = ((await this.qemuImg.info(file, { format: 'qcow2' })) as ImageInfo).compressionType ?? compressionType;
        done.push({ volumeId: v.volumeId, compressedBytes: await allocatedBytes(file), uncompressedBytes: v.originalBytes });
      }
      await this.recordInManifest(join(root, dirname(job.volumes[0].file)), compressionType, done).catch((e: Error) => this.logger.warn(`compression ${job.jobId}: manifest not updated: ${e.message}`));
      return { kind: 'finalized' as const, volumes: done };
    }));
  }

  /** Removes the side files an ended job left next to the backup's files, then reports what was there. */
  async discard(job: DiscardSideFilesJobData): Promise<void> {
    // The job is over: an attempt of it still running here (a stale one) stops and removes what it wrote.
    for (const [key, controller] of this.running) if (key.startsWith(`${job.jobId}:`)) controller.abort(new CompressionAttemptError('cancelled: the compression job has ended'));
    const removed = await this.repositories.withRepository(job.repository, async (root) => {
      const found: string[] = [];
      for (const relative of job.files) {
        const file = resolve(root, relative);
        if (!file.startsWith(resolve(root) + sep)) throw new CompressionAttemptError(`${relative} is not inside the repository`);
        const dir = dirname(file);
        // A deleted backup's directory may be gone already: then so are its side files.
        const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? [] : Promise.reject(e)));
        const partPrefix = `${basename(file)}.a`;
        const leftOver = [...names].sort().filter((n) => n === basename(sideFileOf(file)) || (n.startsWith(partPrefix) && n.endsWith(PARTIAL_SIDE_SUFFIX)));
        for (const name of leftOver) {
          await rm(join(dir, name), { force: true });
          found.push(join(dirname(relative), name));
        }
        if (leftOver.length) await fsyncPath(dir, true);
      }
      return found;
    });
    await this.report({ type: 'CompressionSideFilesDiscarded', vmId: job.vmId, backupId: job.backupId, jobId: job.jobId, hostName: this.hostName, removed, at: new Date().toISOString() });
    this.logger.log(`compression ${job.jobId} of backup ${job.backupId} ended without compressing: ${removed.length ? `removed ${removed.join(', ')}` : 'no side file was left'}`);
  }

  /** Stops a running attempt (its backup is being deleted); an attempt not started yet will not start. */
  cancel(data: { jobId: string; attempt: number }): void {
    const key = `${data.jobId}:${data.attempt}`;
    this.cancelled.add(key);
    this.running.get(key)?.abort(new CompressionAttemptError('cancelled: the backup is being deleted'));
  }

  /** One attempt: deadline, cancellation, and exactly one report of its outcome. */
  private async attempt(
    job: StartCompressionJobData | FinalizeCompressionJobData,
    type: 'Starting' | 'Finalizing',
    work: (signal: AbortSignal) => Promise<Extract<AgentReport, { type: 'CompressionSucceeded' }>['outcome']>,
  ): Promise<void> {
    const key = `${job.jobId}:${job.attempt}`;
    if (this.running.has(key)) return; // the same attempt delivered again to this live agent: the first one reports
    const base = { vmId: job.vmId, backupId: job.backupId, jobId: job.jobId, attempt: job.attempt, hostName: this.hostName };
    const left = Date.parse(job.deadline) - Date.now();
    if (left <= 0) {
      await this.report({ type: 'CompressionFailed', ...base, reason: `the attempt reached its deadline (${job.deadline}) before it started on ${this.hostName}`, at: new Date().toISOString() });
      return;
    }
    const controller = new AbortController();
    this.running.set(key, controller);
    if (this.cancelled.has(key)) controller.abort(new CompressionAttemptError('cancelled: the backup is being deleted'));
    const timer = setTimeout(
      () => controller.abort(new CompressionAttemptError(`the attempt exceeded backup.compression.timeout (${job.timeoutSeconds} s); qemu-img was killed`)),
      Math.min(left, 2 ** 31 - 1),
    );
    const started = Date.now();
    try {
      const outcome = await work(controller.signal);
      await this.report({ type: 'CompressionSucceeded', ...base, outcome, at: new Date().toISOString() });
      this.logger.log(`compression ${type} ${job.jobId} of backup ${job.backupId} attempt ${job.attempt}: done in ${((Date.now() - started) / 1000).toFixed(2)} s`);
    } catch (error) {
      const reason = controller.signal.aborted && controller.signal.reason instanceof Error ? controller.signal.reason.message : (error as Error).message;
      this.logger.error(`compression ${type} ${job.jobId} of backup ${job.backupId} attempt ${job.attempt} failed: ${reason}`);
      await this.report({ type: 'CompressionFailed', ...base, reason, at: new Date().toISOString() });
    } finally {
      clearTimeout(timer);
      this.running.delete(key);
      this.cancelled.delete(key);
    }
  }

  /** A compressed qcow2 copy of one file into its side file (see QemuImgDriver.convertCompressed); returns the compression type used. */
  private async convert(job: StartCompressionJobData, file: string, part: string, original: ImageInfo, signal: AbortSignal): Promise<'zstd' | 'zlib'> {
    if (original.format !== 'qcow2') throw new CompressionAttemptError(`${basename(file)} is ${original.format}, not qcow2`);
    const v2 = original.compat === '0.10';
    // A qcow2 v2 image keeps its version and can only take zlib; a qemu-img built without zstd refuses it
    // (then zlib, below), and remembers so.
    let type: 'zstd' | 'zlib' = job.library === 'zstd' && !v2 && this.zstd !== false ? 'zstd' : 'zlib';
    const run = (t: 'zstd' | 'zlib') => {
      const options: CompressedConvertOptions = {
        sourceFormat: 'qcow2',
        sizeBytes: original.virtualSizeBytes,
        ...(v2 ? { compat: '0.10' as const } : { compressionType: t }),
        coroutines: Math.min(16, Math.max(1, Math.floor(job.coroutines))),
        ...(job.rateLimitMBps >= 1 && { rateLimitBytesPerSec: Math.floor(job.rateLimitMBps * MiB) }),
        signal,
      };
      // The same backing file, by the same (relative) name: only what the top image holds is written.
      if (original.backingFilename) return this.qemuImg.convertCompressed(file, part, { ...options, backingFile: original.backingFilename, backingFormat: original.backingFormat ?? 'qcow2' });
      return this.qemuImg.convertCompressed(file, part, options);
    };
    try {
      await run(type);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (type === 'zstd' && error instanceof CommandFailedError && /zstd|compression.type/i.test(error.stderr)) {
        this.logger.warn(`compression ${job.jobId}: qemu-img refused zstd (${error.stderr}); using zlib from now on`);
        this.zstd = false;
        type = 'zlib';
        await rm(part, { force: true });
        await run(type);
      } else {
        throw error;
      }
    }
    return type;
  }

  /** A side file fit to replace `original`: consistent qcow2, same virtual size, same backing file. */
  private async verify(side: string, original: ImageInfo): Promise<void> {
    const [check, info] = await Promise.all([this.qemuImg.check(side, { format: 'qcow2' }), this.qemuImg.info(side, { format: 'qcow2' }) as Promise<ImageInfo>]);
    if (!check.clean) throw new CompressionAttemptError(`qemu-img check of ${basename(side)}: ${check.checkErrors} error(s), ${check.corruptions} corruption(s), ${check.leaks} leak(s)`);
    if (info.virtualSizeBytes !== original.virtualSizeBytes) throw new CompressionAttemptError(`${basename(side)} has ${info.virtualSizeBytes} bytes, the backup's file ${original.virtualSizeBytes}`);
    if ((info.backingFilename ?? null) !== (original.backingFilename ?? null)) {
      throw new CompressionAttemptError(`${basename(side)} is backed by ${info.backingFilename ?? 'nothing'}, the backup's file by ${original.backingFilename ?? 'nothing'}`);
    }
  }

  private async reusable(side: string, original: ImageInfo): Promise<boolean> {
    if ((await inodeOf(side)) === null) return false;
    try {
      await this.verify(side, original);
      return true;
    } catch {
      return false;
    }
  }

  /** Partial side files of earlier attempts (an attempt that died, or timed out on another host). */
  private async removeEarlierParts(file: string, attempt: number): Promise<void> {
    const dir = dirname(file);
    const prefix = `${basename(file)}.a`;
    for (const name of await readdir(dir)) {
      if (name.startsWith(prefix) && name.endsWith(PARTIAL_SIDE_SUFFIX) && name !== basename(partialSideFile(file, attempt))) await rm(join(dir, name), { force: true });
    }
    await rm(partialSideFile(file, attempt), { force: true });
  }

  /** Adds what the compression did to the backup's manifest (written whole, then renamed). */
  private async recordInManifest(dir: string, compressionType: string | null, volumes: { volumeId: string; compressedBytes: number; uncompressedBytes: number }[]): Promise<void> {
    const path = join(dir, 'manifest.json');
    const manifest = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    manifest.compression = { type: compressionType, volumes, compressedAt: new Date().toISOString() };
    const tmp = join(dir, '.manifest.json.tmp');
    await writeFile(tmp, JSON.stringify(manifest, null, 2));
    await fsyncPath(tmp);
    await rename(tmp, path);
  }
}
