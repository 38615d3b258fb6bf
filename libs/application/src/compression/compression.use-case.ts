import { backupCompressionDecider, BackupCompressionCommand, CompressionAttemptSettings, CompressionLibrary, DomainEvent, Streams } from '@strata/domain';
import { AgentReport } from '@strata/jobs';
import { CommandHandler, HandleResult } from '../command-handler';
import { deterministicId } from '../ids';
import { hostIdFor } from '../inventory/agent-reports.use-case';

type Report<T extends AgentReport['type']> = Extract<AgentReport, { type: T }>;

/** Job ids derive from the backup: a backup has one Starting and one Finalizing job. */
export const compressionJobIds = {
  starting: (backupId: string) => deterministicId(backupId, 'compression', 'Starting'),
  finalizing: (backupId: string) => deterministicId(backupId, 'compression', 'Finalizing'),
};

export interface CompressionRetryPolicy {
  /** backup.compression.max.job.retries */
  maxRetries: number;
  /** backup.compression.retry.interval, in milliseconds */
  retryIntervalMs: number;
}

/** The retry settings in force when an attempt fails (read from the settings read model by the caller). */
export interface CompressionPolicySource {
  retryPolicy(): Promise<CompressionRetryPolicy>;
}

/**
 * Every change to a backup's compression, as commands on its VM's stream. Event ids derive from the job,
 * the attempt and what happened, so a report delivered twice, or a scheduler that retries after a crash,
 * appends nothing twice.
 */
export class CompressionUseCase {
  constructor(
    private readonly handler: CommandHandler,
    private readonly policy: CompressionPolicySource,
  ) {}

  private handle(vmId: string, command: BackupCompressionCommand, eventId: (e: DomainEvent, i: number) => string): Promise<HandleResult<DomainEvent>> {
    return this.handler.handle(Streams.vmBackups(vmId), backupCompressionDecider, command, { eventId });
  }

  /** A completed backup of an offering with `compress`: its Starting job, due now. */
  schedule(vmId: string, backupId: string, zoneId: string, library: CompressionLibrary, at: Date): Promise<HandleResult<DomainEvent>> {
    const jobId = compressionJobIds.starting(backupId);
    return this.handle(vmId, { type: 'ScheduleCompression', data: { jobId, backupId, vmId, zoneId, library, at } }, () => deterministicId(jobId, 'scheduled'));
  }

  /** The scheduler hands an attempt to a host (throws a DomainError when it may not start now). */
  start(vmId: string, jobId: string, hostId: string, settings: CompressionAttemptSettings, at: Date): Promise<HandleResult<DomainEvent>> {
    return this.handle(vmId, { type: 'StartCompressionAttempt', data: { jobId, hostId, settings, at } }, (e) => deterministicId(jobId, 'started', String((e.data as { attempt: number }).attempt)));
  }

  async succeeded(report: Report<'CompressionSucceeded'>): Promise<void> {
    const outcome =
      report.outcome.kind === 'sideFilesWritten'
        ? { ...report.outcome, finalizingJobId: compressionJobIds.finalizing(report.backupId) }
        : report.outcome;
    await this.handle(
      report.vmId,
      { type: 'CompleteCompressionAttempt', data: { jobId: report.jobId, attempt: report.attempt, hostId: hostIdFor(report.hostName), outcome, at: new Date(report.at) } },
      (_e, i) => deterministicId(report.jobId, String(report.attempt), 'succeeded', String(i)),
    );
  }

  async failed(report: Report<'CompressionFailed'>): Promise<void> {
    await this.fail(report.vmId, report.jobId, report.attempt, hostIdFor(report.hostName), report.reason, new Date(report.at));
  }

  /** An attempt whose host reported nothing by its deadline (and a grace period) counts as failed. */
  lapse(vmId: string, jobId: string, attempt: number, hostId: string, reason: string, at: Date): Promise<void> {
    return this.fail(vmId, jobId, attempt, hostId, reason, at);
  }

  private async fail(vmId: string, jobId: string, attempt: number, hostId: string, reason: string, at: Date): Promise<void> {
    const { maxRetries, retryIntervalMs } = await this.policy.retryPolicy();
    await this.handle(vmId, { type: 'FailCompressionAttempt', data: { jobId, attempt, hostId, reason, maxRetries, retryIntervalMs, at } }, (_e, i) => deterministicId(jobId, String(attempt), 'failed', String(i)));
  }

  /** A host removed the side files a Failed or Cancelled job left. */
  async sideFilesDiscarded(report: Report<'CompressionSideFilesDiscarded'>): Promise<void> {
    await this.handle(
      report.vmId,
      { type: 'RecordSideFilesDiscarded', data: { jobId: report.jobId, hostId: hostIdFor(report.hostName), removed: report.removed, at: new Date(report.at) } },
      () => deterministicId(report.jobId, 'side-files-discarded'),
    );
  }

  /**
   * deleteBackup calls this first: scheduled jobs end now, a running attempt is asked to stop (the
   * compression scheduler tells its host) and the job ends when the host reports.
   */
  cancel(vmId: string, backupId: string, reason: string, at: Date): Promise<HandleResult<DomainEvent>> {
    return this.handler.handle(Streams.vmBackups(vmId), backupCompressionDecider, { type: 'CancelCompression', data: { backupId, reason, at } });
  }
}
