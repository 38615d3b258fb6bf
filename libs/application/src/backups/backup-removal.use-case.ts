import { AsyncJobCommand, asyncJobDecider, BackupDeletionCommand, backupDeletionDecider, BackupDeletionState, backupScheduleDecider, DomainEvent, Streams } from '@strata/domain';
import { RemovalReport } from '@strata/jobs';
import { CommandHandler } from '../command-handler';
import { deterministicId } from '../ids';

type Report<T extends RemovalReport['type']> = Extract<RemovalReport, { type: T }>;

/**
 * Deleting backups after the request: the host's outcome of a removal becomes events (and ends the async
 * jobs that waited for it), obstacles that end let the next removal start, and a scheduled backup that
 * completed applies its schedule's retention. Event ids derive from the report or the triggering event,
 * so a redelivered job appends nothing twice.
 */
export class BackupRemovalUseCase {
  constructor(private readonly handler: CommandHandler) {}

  private async state(vmId: string): Promise<BackupDeletionState> {
    return (await this.handler.load(Streams.vmBackups(vmId), backupDeletionDecider)).state;
  }

  async succeeded(report: Report<'BackupRemovalSucceeded'>): Promise<void> {
    const { backupId, removalJobId, outcome } = report;
    const displaytext = outcome.kind === 'merged' ? `backup ${backupId} was merged into the backups that depend on it and removed` : `backup ${backupId} was removed`;
    await this.conclude(report, {
      removal: (at) => ({ type: 'CompleteRemoval', data: { backupId, removalJobId, outcome, at } }),
      removalTag: 'completed',
      job: (jobId, at) => ({ type: 'SucceedAsyncJob', data: { jobId, resultType: 'success', result: { success: true, displaytext }, at } }),
      jobTag: 'job-succeeded',
    });
  }

  async failed(report: Report<'BackupRemovalFailed'>): Promise<void> {
    const { backupId, removalJobId, reason } = report;
    await this.conclude(report, {
      removal: (at) => ({ type: 'FailRemoval', data: { backupId, removalJobId, reason, at } }),
      removalTag: 'failed',
      job: (jobId, at) => ({ type: 'FailAsyncJob', data: { jobId, errorCode: 530, errorText: `backup ${backupId} could not be removed: ${reason}`, at } }),
      jobTag: 'job-failed',
    });
  }

  /**
   * The host's outcome of one removal attempt, then the end of the async jobs that waited for it. The jobs
   * are read before the outcome is recorded (which ends the removal's entry), and only when the report is
   * of the attempt that runs: a late report of an earlier attempt must not end the jobs of the current one.
   */
  private async conclude(
    report: RemovalReport,
    end: { removal: (at: Date) => BackupDeletionCommand; removalTag: string; job: (jobId: string, at: Date) => AsyncJobCommand; jobTag: string },
  ): Promise<void> {
    const removal = (await this.state(report.vmId)).removals[report.backupId];
    const jobIds = removal?.removalJobId === report.removalJobId ? removal.jobIds : [];
    const at = new Date(report.at);
    await this.handler.handle(Streams.vmBackups(report.vmId), backupDeletionDecider, end.removal(at), { eventId: (_e, i) => deterministicId(report.removalJobId, end.removalTag, String(i)) });
    for (const jobId of jobIds) {
      await this.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, end.job(jobId, at), { eventId: () => deterministicId(report.removalJobId, jobId, end.jobTag) });
    }
  }

  /** After an event that may have ended an obstacle: start the next waiting removal, if any can start. */
  async advance(vmId: string, triggerEventId: string, at: Date): Promise<DomainEvent[]> {
    const r = await this.handler.handle(Streams.vmBackups(vmId), backupDeletionDecider, { type: 'AdvanceRemovals', data: { at } }, { eventId: (_e, i) => deterministicId(triggerEventId, 'advance-removals', String(i)) });
    return r.events;
  }

  /** After `backupId` completed: when a schedule took it, that schedule's backups beyond maxbackups are deleted. */
  async applyRetention(vmId: string, backupId: string, at: Date): Promise<DomainEvent[]> {
    const state = await this.state(vmId);
    const backup = state.backups[backupId];
    if (!backup || backup.intervalType === 'MANUAL') return [];
    const schedules = (await this.handler.load(Streams.vmSchedules(vmId), backupScheduleDecider)).state;
    const schedule = Object.values(schedules.schedules).find((s) => s.intervalType === backup.intervalType);
    if (!schedule || schedule.maxBackups === 0) return [];
    const r = await this.handler.handle(
      Streams.vmBackups(vmId),
      backupDeletionDecider,
      { type: 'ApplyRetention', data: { intervalType: schedule.intervalType, maxBackups: schedule.maxBackups, jobId: deterministicId(backupId, 'retention-job'), reason: `retention of the ${schedule.intervalType} schedule ${schedule.scheduleId} (maxbackups ${schedule.maxBackups})`, at } },
      { eventId: (_e, i) => deterministicId(backupId, 'retention', String(i)) },
    );
    return r.events;
  }
}
