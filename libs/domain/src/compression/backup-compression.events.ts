import { DomainEvent } from '../decider';
import { CompressionLibrary } from '../offerings/native-offering.decider';

/**
 * Compression of a completed backup, KNIB style: a **Starting** job writes a compressed side file next to
 * each of the backup's files (`qemu-img convert -c`, same backing file), then a **Finalizing** job checks
 * the side files and renames them over the originals. Both live in the VM's stream (`vmBackups-<vmId>`),
 * so a swap is decided against the chain's readers (backups, restores, consolidations) atomically.
 */
export type CompressionJobType = 'Starting' | 'Finalizing';

/** How one attempt was run: the settings in force when it was dispatched. */
export interface CompressionAttemptSettings {
  /** `qemu-img convert -m` (backup.compression.coroutines). */
  coroutines: number;
  /** `qemu-img convert -r` in MiB/s; below 1 = unlimited (backup.compression.rate.limit). */
  rateLimitMBps: number;
  /** Free space the repository needs, as a multiple of the backup's size (backup.compression.minimum.free.storage). */
  minimumFreeStorage: number;
  /** backup.compression.timeout. */
  timeoutSeconds: number;
}

/** A compressed side file written by a Starting job, waiting to be swapped in. */
export interface CompressionSideFile {
  volumeId: string;
  /** The backup's file, relative to the repository root. */
  file: string;
  /** The side file next to it, relative to the repository root. */
  sideFile: string;
  /** Size of the side file on disk, in bytes (what `size` becomes). */
  sideBytes: number;
  /** Inode of the side file (decimal): after the rename the backup's file has it, which tells a retry the swap happened. */
  sideInode: string;
  /** Size of the original file on disk, in bytes. */
  originalBytes: number;
}

export type CompressionJobScheduled = DomainEvent<
  'CompressionJobScheduled',
  {
    jobId: string;
    backupId: string;
    vmId: string;
    /** The zone of the backup's repository: where its Starting jobs count against the zone limit. */
    zoneId: string;
    type: CompressionJobType;
    /** The offering's compressionlibrary (zlib is used anyway when an image cannot take zstd). */
    library: CompressionLibrary;
    /** Not before this time. */
    scheduledAt: string;
    /** A Finalizing job's side files (from the Starting job); empty for a Starting job. */
    sideFiles: CompressionSideFile[];
  }
>;

/** One attempt of a job was handed to a host; the host must report its outcome before `deadline`. */
export type CompressionStarted = DomainEvent<
  'CompressionStarted',
  { jobId: string; backupId: string; type: CompressionJobType; attempt: number; hostId: string; startedAt: string; deadline: string; settings: CompressionAttemptSettings }
>;

/** A Starting job's outcome: every volume has a verified side file. */
export type CompressionSideFilesWritten = DomainEvent<
  'CompressionSideFilesWritten',
  { jobId: string; backupId: string; attempt: number; hostId: string; compressionType: CompressionLibrary; volumes: CompressionSideFile[]; writtenAt: string }
>;

/** A Finalizing job's outcome: the side files replaced the backup's files. */
export type CompressionFinalized = DomainEvent<
  'CompressionFinalized',
  { jobId: string; backupId: string; attempt: number; hostId: string; volumes: { volumeId: string; compressedBytes: number; uncompressedBytes: number }[]; finalizedAt: string }
>;

/** An attempt failed (or timed out, or its host never answered). `retryAt` null: no attempt is left. */
export type CompressionAttemptFailed = DomainEvent<
  'CompressionAttemptFailed',
  { jobId: string; backupId: string; type: CompressionJobType; attempt: number; hostId: string; reason: string; failedAt: string; retryAt: string | null }
>;

/** The backup's compression gave up (retries exhausted): compressionstatus CompressionError. Its files are the originals. */
export type CompressionFailed = DomainEvent<'CompressionFailed', { jobId: string; backupId: string; type: CompressionJobType; reason: string; failedAt: string }>;

/**
 * The backup's compression jobs were cancelled (the backup is being deleted). Scheduled jobs end now;
 * running ones are asked to stop and keep their place (host slot, swap lock) until their host reports.
 */
export type CompressionCancelled = DomainEvent<'CompressionCancelled', { backupId: string; reason: string; cancelledJobIds: string[]; stoppingJobIds: string[]; cancelledAt: string }>;

/** The running attempt of a cancelled job ended (whatever its outcome); the job is over. */
export type CompressionJobStopped = DomainEvent<
  'CompressionJobStopped',
  { jobId: string; backupId: string; type: CompressionJobType; attempt: number; outcome: 'succeeded' | 'failed'; detail: string; stoppedAt: string }
>;

/**
 * A host removed the side files a job that ended without compressing (Failed or Cancelled) may have left
 * next to the backup's files (`.zside`, and `.zpart` of attempts that died); `removed` lists what was there.
 */
export type CompressionSideFilesDiscarded = DomainEvent<
  'CompressionSideFilesDiscarded',
  { jobId: string; backupId: string; type: CompressionJobType; hostId: string; removed: string[]; discardedAt: string }
>;

export type BackupCompressionEvent =
  | CompressionJobScheduled
  | CompressionStarted
  | CompressionSideFilesWritten
  | CompressionFinalized
  | CompressionAttemptFailed
  | CompressionFailed
  | CompressionCancelled
  | CompressionJobStopped
  | CompressionSideFilesDiscarded;

export const BACKUP_COMPRESSION_EVENT_TYPES: readonly BackupCompressionEvent['type'][] = [
  'CompressionJobScheduled',
  'CompressionStarted',
  'CompressionSideFilesWritten',
  'CompressionFinalized',
  'CompressionAttemptFailed',
  'CompressionFailed',
  'CompressionCancelled',
  'CompressionJobStopped',
  'CompressionSideFilesDiscarded',
];
