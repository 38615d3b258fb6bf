import type { RepositoryAccess } from './host-jobs';

/**
 * Compression work on a host (KNIB's Starting and Finalizing jobs). It has its own queue per host,
 * `host.<hostId>.compression`, so long compressions never take the slots of backups and restores on
 * `host.<hostId>`; how many run at once is decided by the management plane's compression scheduler (the
 * per-host and per-zone limits), which only hands out attempts that fit. BullMQ job id:
 * `compression-<jobId>-<attempt>` (one delivery per attempt; a redelivery after an agent crash is the same
 * attempt).
 */
export const hostCompressionQueueName = (hostId: string) => `host.${hostId}.compression`;
export const compressionQueueJobId = (jobId: string, attempt: number) => `compression-${jobId}-${attempt}`;
export const compressionCancelQueueJobId = (jobId: string, attempt: number) => `compression-cancel-${jobId}-${attempt}`;
export const compressionDiscardQueueJobId = (jobId: string, hostId: string) => `compression-discard-${jobId}-${hostId}`;

/** Suffix of a side file while qemu-img writes it (never swapped in). */
export const PARTIAL_SIDE_SUFFIX = '.zpart';
/** Suffix of a complete, checked side file (written by a Starting job, swapped in by a Finalizing job). */
export const SIDE_SUFFIX = '.zside';

interface CompressionAttemptBase {
  jobId: string;
  backupId: string;
  vmId: string;
  attempt: number;
  repository: RepositoryAccess;
  /** The attempt is over at this time (ISO): the agent kills it then, and does not start it after. */
  deadline: string;
  timeoutSeconds: number;
}

export interface StartCompressionJobData extends CompressionAttemptBase {
  /** The backup's files, relative to the repository root. */
  volumes: { volumeId: string; file: string }[];
  /** The offering's choice; zlib is used anyway for an image that cannot take zstd. */
  library: 'zstd' | 'zlib';
  coroutines: number;
  /** Below 1: unlimited. */
  rateLimitMBps: number;
  /** The repository needs `minimumFreeStorage x backupSizeBytes` free before the attempt starts. */
  minimumFreeStorage: number;
  backupSizeBytes: number;
}

export interface FinalizeCompressionJobData extends CompressionAttemptBase {
  volumes: { volumeId: string; file: string; sideFile: string; sideBytes: number; sideInode: string; originalBytes: number }[];
}

/** Remove the side files a Failed or Cancelled job left next to these files of a backup (idempotent). */
export interface DiscardSideFilesJobData {
  jobId: string;
  backupId: string;
  vmId: string;
  repository: RepositoryAccess;
  /** The backup's files, relative to the repository root: `<file>.zside` and `<file>.a<n>.zpart` go. */
  files: string[];
}

export type CompressionHostJob =
  | { name: 'startCompression'; data: StartCompressionJobData }
  | { name: 'finalizeCompression'; data: FinalizeCompressionJobData }
  /** Stop a running attempt (its backup is being deleted); the attempt then reports a failure. */
  | { name: 'cancelCompression'; data: { jobId: string; attempt: number } }
  | { name: 'discardCompressionSideFiles'; data: DiscardSideFilesJobData };

export interface CompressedSideFileReport {
  volumeId: string;
  file: string;
  sideFile: string;
  sideBytes: number;
  sideInode: string;
  originalBytes: number;
}

export type CompressionReport =
  | {
      type: 'CompressionSucceeded';
      vmId: string;
      backupId: string;
      jobId: string;
      attempt: number;
      hostName: string;
      outcome:
        | { kind: 'sideFilesWritten'; compressionType: 'zstd' | 'zlib'; volumes: CompressedSideFileReport[] }
        | { kind: 'finalized'; volumes: { volumeId: string; compressedBytes: number; uncompressedBytes: number }[] };
      at: string;
    }
  | { type: 'CompressionFailed'; vmId: string; backupId: string; jobId: string; attempt: number; hostName: string; reason: string; at: string }
  /** `removed`: the side files that were there (relative to the repository root). */
  | { type: 'CompressionSideFilesDiscarded'; vmId: string; backupId: string; jobId: string; hostName: string; removed: string[]; at: string };
