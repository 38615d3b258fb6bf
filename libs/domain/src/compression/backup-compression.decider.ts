import { Decider, DomainEvent } from '../decider';
import { conflict, DomainError, invalid, notFound } from '../domain-error';
import { backupChainDecider, BackupChainState, chainReaders } from '../backups/backup-chain.decider';
import { CompressionLibrary } from '../offerings/native-offering.decider';
import {
  BACKUP_COMPRESSION_EVENT_TYPES,
  BackupCompressionEvent,
  CompressionAttemptSettings,
  CompressionJobType,
  CompressionSideFile,
} from './backup-compression.events';

/**
 * Compression jobs of one VM's backups, decided on the VM's stream (`vmBackups-<vmId>`) together with its
 * chain: the state folds every event of the stream (the chain part with the backup chain decider), so "no
 * Finalizing swap while the chain is read" is one decision at one stream revision.
 *
 * A job is Scheduled (waiting for its date and, for a Starting job, a free slot), Running (one attempt on a
 * host), then Done, Failed (retries exhausted) or Cancelled. A failed attempt is retried after the retry
 * interval, at most `maxRetries` times; limits (per host, per zone) are the scheduler's business: it is
 * the only one that starts attempts, and counts Running jobs.
 */
export type CompressionJobStatus = 'Scheduled' | 'Running' | 'Done' | 'Failed' | 'Cancelled';

export interface CompressionJobState {
  jobId: string;
  backupId: string;
  vmId: string;
  type: CompressionJobType;
  library: CompressionLibrary;
  zoneId: string;
  status: CompressionJobStatus;
  /** Attempts started so far. */
  attempts: number;
  scheduledAt: string;
  /** The attempt in progress (also while a cancelled job waits for its host to stop it). */
  running: { attempt: number; hostId: string; deadline: string } | null;
  /** deleteBackup asked to stop this job while an attempt ran: it ends with that attempt, without retry. */
  cancelRequested: boolean;
  sideFiles: CompressionSideFile[];
  /** A host removed what side files the job left (see sideFilesLeftBehind). */
  sideFilesDiscarded: boolean;
}

export interface BackupCompressionState {
  chain: BackupChainState;
  /** Backups of the VM that completed (only those can be compressed). */
  completedBackups: Record<string, true>;
  jobs: Record<string, CompressionJobState>;
  /** Job ids by backup, in the order they were scheduled. */
  jobsByBackup: Record<string, string[]>;
}

export type BackupCompressionCommand =
  | { type: 'ScheduleCompression'; data: { jobId: string; backupId: string; vmId: string; zoneId: string; library: CompressionLibrary; at: Date } }
  | { type: 'StartCompressionAttempt'; data: { jobId: string; hostId: string; settings: CompressionAttemptSettings; at: Date } }
  | {
      type: 'CompleteCompressionAttempt';
      data: {
        jobId: string;
        attempt: number;
        hostId: string;
        outcome:
          | { kind: 'sideFilesWritten'; compressionType: CompressionLibrary; volumes: CompressionSideFile[]; finalizingJobId: string }
          | { kind: 'finalized'; volumes: { volumeId: string; compressedBytes: number; uncompressedBytes: number }[] };
        at: Date;
      };
    }
  | { type: 'FailCompressionAttempt'; data: { jobId: string; attempt: number; hostId: string; reason: string; maxRetries: number; retryIntervalMs: number; at: Date } }
  /** deleteBackup: scheduled jobs end at once, running ones stop with their current attempt. */
  | { type: 'CancelCompression'; data: { backupId: string; reason: string; at: Date } }
  /** A host removed the side files a Failed or Cancelled job left (`removed`: those it found). */
  | { type: 'RecordSideFilesDiscarded'; data: { jobId: string; hostId: string; removed: string[]; at: Date } };

const ENDED: readonly CompressionJobStatus[] = ['Done', 'Failed', 'Cancelled'];
const isCompressionEvent = (e: DomainEvent): e is BackupCompressionEvent => (BACKUP_COMPRESSION_EVENT_TYPES as readonly string[]).includes(e.type);

/** The jobs of a backup that have not ended (Scheduled or Running), oldest first. */
export function activeCompressionJobs(state: BackupCompressionState, backupId: string): CompressionJobState[] {
  return (state.jobsByBackup[backupId] ?? []).map((id) => state.jobs[id]).filter((j) => !ENDED.includes(j.status));
}

/** Whether any compression of the backup may still touch its files (deleteBackup waits until it is false). */
export function compressionTouchesFiles(state: BackupCompressionState, backupId: string): boolean {
  return activeCompressionJobs(state, backupId).some((j) => j.status === 'Running');
}

/**
 * Whether a job may have left side files on the repository that nothing will use: it ended without
 * compressing (Failed, or Cancelled by deleteBackup), and either it is a Finalizing job (the Starting job's
 * side files were never swapped in, or only some of them) or it is a Starting job that ran (an attempt
 * that died with its agent, or one that completed after the job was cancelled, leaves its files), and no
 * host has removed them yet. The compression scheduler has a host remove them.
 */
export function sideFilesLeftBehind(job: Pick<CompressionJobState, 'type' | 'status' | 'attempts' | 'sideFilesDiscarded'>): boolean {
  if (job.sideFilesDiscarded || (job.status !== 'Failed' && job.status !== 'Cancelled')) return false;
  return job.type === 'Finalizing' || job.attempts > 0;
}

function requireJob(state: BackupCompressionState, jobId: string): CompressionJobState {
  const job = state.jobs[jobId];
  if (!job) throw notFound(`there is no compression job ${jobId}`, 'id');
  return job;
}

/** The running attempt the report is about, or null when the report is stale or repeated. */
function currentAttempt(state: BackupCompressionState, jobId: string, attempt: number): CompressionJobState | null {
  const job = state.jobs[jobId];
  if (!job || job.status !== 'Running' || !job.running || job.running.attempt !== attempt) return null;
  return job;
}

function positiveWhole(n: number, what: string): void {
  if (!Number.isFinite(n) || n < 0) throw new DomainError('invalid', `${what} must not be negative`);
}

export const backupCompressionDecider: Decider<BackupCompressionCommand, DomainEvent, BackupCompressionState> = {
  initialState: () => ({ chain: backupChainDecider.initialState(), completedBackups: {}, jobs: {}, jobsByBackup: {} }),

  decide(command, state): BackupCompressionEvent[] {
    switch (command.type) {
      case 'ScheduleCompression': {
        const d = command.data;
        if ((state.jobsByBackup[d.backupId] ?? []).length > 0) return []; // scheduled once per backup
        if (!state.completedBackups[d.backupId]) throw notFound(`backup ${d.backupId} did not complete: there is nothing to compress`, 'backupid');
        return [
          {
            type: 'CompressionJobScheduled',
            data: { jobId: d.jobId, backupId: d.backupId, vmId: d.vmId, zoneId: d.zoneId, type: 'Starting', library: d.library, scheduledAt: d.at.toISOString(), sideFiles: [] },
          },
        ];
      }
      case 'StartCompressionAttempt': {
        const d = command.data;
        const job = requireJob(state, d.jobId);
        if (job.status !== 'Scheduled') throw conflict(`compression job ${d.jobId} is ${job.status}, not waiting to run`);
        if (Date.parse(job.scheduledAt) > d.at.getTime()) throw conflict(`compression job ${d.jobId} is not due before ${job.scheduledAt}`);
        if (job.type === 'Finalizing') {
          const readers = chainReaders(state.chain, job.backupId);
          if (readers.length) throw conflict(`backup ${job.backupId} cannot be swapped now: ${readers.join('; ')}`);
        }
        positiveWhole(d.settings.timeoutSeconds, 'the timeout');
        return [
          {
            type: 'CompressionStarted',
            data: {
              jobId: job.jobId,
              backupId: job.backupId,
              type: job.type,
              attempt: job.attempts + 1,
              hostId: d.hostId,
              startedAt: d.at.toISOString(),
              deadline: new Date(d.at.getTime() + d.settings.timeoutSeconds * 1000).toISOString(),
              settings: d.settings,
            },
          },
        ];
      }
      case 'CompleteCompressionAttempt': {
        const d = command.data;
        const job = currentAttempt(state, d.jobId, d.attempt);
        if (!job) return []; // a repeated or late report: that attempt was already settled
        const at = d.at.toISOString();
        const expected = job.type === 'Starting' ? 'sideFilesWritten' : 'finalized';
        if (d.outcome.kind !== expected) throw invalid(`a ${job.type} compression job cannot end with ${d.outcome.kind}`);
        if (job.cancelRequested) {
          return [{ type: 'CompressionJobStopped', data: { jobId: job.jobId, backupId: job.backupId, type: job.type, attempt: d.attempt, outcome: 'succeeded', detail: 'the attempt ended after the job was cancelled', stoppedAt: at } }];
        }
        if (d.outcome.kind === 'sideFilesWritten') {
          return [
            {
              type: 'CompressionSideFilesWritten',
              data: { jobId: job.jobId, backupId: job.backupId, attempt: d.attempt, hostId: d.hostId, compressionType: d.outcome.compressionType, volumes: d.outcome.volumes, writtenAt: at },
            },
            {
              type: 'CompressionJobScheduled',
              data: {
                jobId: d.outcome.finalizingJobId,
                backupId: job.backupId,
                vmId: job.vmId,
                zoneId: job.zoneId,
                type: 'Finalizing',
                library: d.outcome.compressionType,
                scheduledAt: at,
                sideFiles: d.outcome.volumes,
              },
            },
          ];
        }
        return [{ type: 'CompressionFinalized', data: { jobId: job.jobId, backupId: job.backupId, attempt: d.attempt, hostId: d.hostId, volumes: d.outcome.volumes, finalizedAt: at } }];
      }
      case 'FailCompressionAttempt': {
        const d = command.data;
        const job = currentAttempt(state, d.jobId, d.attempt);
        if (!job) return [];
        const at = d.at.toISOString();
        if (job.cancelRequested) {
          return [{ type: 'CompressionJobStopped', data: { jobId: job.jobId, backupId: job.backupId, type: job.type, attempt: d.attempt, outcome: 'failed', detail: d.reason, stoppedAt: at } }];
        }
        positiveWhole(d.maxRetries, 'max.job.retries');
        positiveWhole(d.retryIntervalMs, 'the retry interval');
        // Attempt n failed: n - 1 retries were used; another one is allowed while n <= maxRetries.
        const retry = d.attempt <= d.maxRetries;
        const failed: BackupCompressionEvent = {
          type: 'CompressionAttemptFailed',
          data: { jobId: job.jobId, backupId: job.backupId, type: job.type, attempt: d.attempt, hostId: d.hostId, reason: d.reason, failedAt: at, retryAt: retry ? new Date(d.at.getTime() + d.retryIntervalMs).toISOString() : null },
        };
        if (retry) return [failed];
        return [failed, { type: 'CompressionFailed', data: { jobId: job.jobId, backupId: job.backupId, type: job.type, reason: `${d.attempt} attempt(s) failed; the last: ${d.reason}`, failedAt: at } }];
      }
      case 'CancelCompression': {
        const d = command.data;
        const active = activeCompressionJobs(state, d.backupId);
        const cancelledJobIds = active.filter((j) => j.status === 'Scheduled').map((j) => j.jobId);
        const stoppingJobIds = active.filter((j) => j.status === 'Running' && !j.cancelRequested).map((j) => j.jobId);
        if (cancelledJobIds.length === 0 && stoppingJobIds.length === 0) return [];
        return [{ type: 'CompressionCancelled', data: { backupId: d.backupId, reason: d.reason, cancelledJobIds, stoppingJobIds, cancelledAt: d.at.toISOString() } }];
      }
      case 'RecordSideFilesDiscarded': {
        const d = command.data;
        const job = requireJob(state, d.jobId);
        if (job.sideFilesDiscarded) return []; // a repeated report
        if (!sideFilesLeftBehind(job)) throw conflict(`compression job ${d.jobId} is ${job.status}: it has no side files to discard`);
        return [{ type: 'CompressionSideFilesDiscarded', data: { jobId: job.jobId, backupId: job.backupId, type: job.type, hostId: d.hostId, removed: d.removed, discardedAt: d.at.toISOString() } }];
      }
    }
  },

  evolve(state, event) {
    // The chain part sees every event of the stream (its own, restores', and the swap lock of ours).
    const next: BackupCompressionState = { ...state, chain: backupChainDecider.evolve(state.chain, event as Parameters<typeof backupChainDecider.evolve>[1]) };
    if (event.type === 'BackupCompleted') {
      const backupId = (event.data as { backupId: string }).backupId;
      return { ...next, completedBackups: { ...next.completedBackups, [backupId]: true } };
    }
    if (!isCompressionEvent(event)) return next;
    const update = (jobId: string, change: Partial<CompressionJobState>): BackupCompressionState => {
      const job = next.jobs[jobId];
      return job ? { ...next, jobs: { ...next.jobs, [jobId]: { ...job, ...change } } } : next;
    };
    switch (event.type) {
      case 'CompressionJobScheduled': {
        const d = event.data;
        if (next.jobs[d.jobId]) return next;
        const job: CompressionJobState = {
          jobId: d.jobId,
          backupId: d.backupId,
          vmId: d.vmId,
          type: d.type,
          library: d.library,
          zoneId: d.zoneId,
          status: 'Scheduled',
          attempts: 0,
          scheduledAt: d.scheduledAt,
          running: null,
          cancelRequested: false,
          sideFiles: d.sideFiles,
          sideFilesDiscarded: false,
        };
        return { ...next, jobs: { ...next.jobs, [d.jobId]: job }, jobsByBackup: { ...next.jobsByBackup, [d.backupId]: [...(next.jobsByBackup[d.backupId] ?? []), d.jobId] } };
      }
      case 'CompressionStarted':
        return update(event.data.jobId, { status: 'Running', attempts: event.data.attempt, running: { attempt: event.data.attempt, hostId: event.data.hostId, deadline: event.data.deadline } });
      case 'CompressionSideFilesWritten':
      case 'CompressionFinalized':
        return update(event.data.jobId, { status: 'Done', running: null });
      case 'CompressionAttemptFailed':
        return event.data.retryAt
          ? update(event.data.jobId, { status: 'Scheduled', running: null, scheduledAt: event.data.retryAt })
          : update(event.data.jobId, { status: 'Failed', running: null });
      case 'CompressionFailed':
        return update(event.data.jobId, { status: 'Failed', running: null });
      case 'CompressionCancelled': {
        let s = next;
        for (const id of event.data.cancelledJobIds) s = s.jobs[id] ? { ...s, jobs: { ...s.jobs, [id]: { ...s.jobs[id], status: 'Cancelled' } } } : s;
        for (const id of event.data.stoppingJobIds) s = s.jobs[id] ? { ...s, jobs: { ...s.jobs, [id]: { ...s.jobs[id], cancelRequested: true } } } : s;
        return s;
      }
      case 'CompressionJobStopped':
        return update(event.data.jobId, { status: 'Cancelled', running: null });
      case 'CompressionSideFilesDiscarded':
        return update(event.data.jobId, { sideFilesDiscarded: true });
    }
  },
};
