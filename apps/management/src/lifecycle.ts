import { posix } from 'node:path';
import { defaultRepeatStrategy, Job, Queue, Worker } from 'bullmq';
import { DataSource } from 'typeorm';
import { asyncJobDecider, backupChainDecider, backupDeletionDecider, BackupRemovalStarted, BackupSchedule, backupScheduleDecider, BackupScheduleDeleted, DomainError, Streams } from '@strata/domain';
import { BackupRemovalUseCase, CommandHandler, deterministicId } from '@strata/application';
import { EventStore, RecordedEvent } from '@strata/event-store';
import { removalHostJobId, RemoveBackupJobData, RepositoryAccess } from '@strata/jobs';
import { BackupOfferingView, BackupRepositoryView, effectiveSetting, HostView, NativeOfferingView, VirtualMachineView } from '@strata/read-models';
import { Logger } from '@strata/config';
import { backupFile } from './host-job-builder';

/**
 * The chain lifecycle's process manager: removals of deleted backups go to the VM's host, removals that
 * waited are advanced after every event that may have ended their obstacle, retention is applied after a
 * scheduled backup completed, and backup schedules are BullMQ job schedulers (queue `lifecycle`, scheduler
 * id `schedule-<scheduleId>`): BullMQ hands each fire to exactly one worker, so several management
 * instances never fire a schedule twice.
 */
export const LIFECYCLE_QUEUE = 'lifecycle';
export const scheduleSchedulerId = (scheduleId: string) => `schedule-${scheduleId}`;

/**
 * Test-only: with `STRATA_TEST_SCHEDULE_EVERY_MS=<ms>` every schedule fires every <ms> milliseconds (BullMQ
 * `every`) instead of at its cron time, so a test sees several fires in seconds. Unset (always, outside
 * tests) the cron pattern and time zone of the schedule are used.
 */
export const SCHEDULE_TEST_EVERY_ENV = 'STRATA_TEST_SCHEDULE_EVERY_MS';

/** Events after which a waiting removal may be able to start. */
export const REMOVAL_TRIGGERS = new Set([
  'BackupCompleted',
  'BackupFailed',
  'RestoreCompleted',
  'RestoreFailed',
  'ConsolidationCompleted',
  'CompressionFinalized',
  'CompressionFailed',
  'CompressionAttemptFailed',
  'CompressionJobStopped',
  'CompressionCancelled',
  'CompressionSideFilesWritten',
]);

type LifecycleJob =
  | { name: 'advanceRemovals'; data: { vmId: string; eventId: string } }
  | { name: 'applyRetention'; data: { vmId: string; backupId: string } }
  | { name: 'scheduledBackup'; data: { vmId: string; scheduleId: string } };

const vmOf = (event: RecordedEvent) => event.streamId.slice(Streams.vmBackups('').length);

/** Which lifecycle jobs an event asks for (pure; job ids deterministic). */
export function lifecycleJobsFor(event: RecordedEvent): { job: LifecycleJob; jobId: string }[] {
  if (!event.streamId.startsWith(Streams.vmBackups(''))) return [];
  const out: { job: LifecycleJob; jobId: string }[] = [];
  if (event.type === 'BackupCompleted') {
    const backupId = (event.data as { backupId: string }).backupId;
    out.push({ job: { name: 'applyRetention', data: { vmId: vmOf(event), backupId } }, jobId: `retention-${backupId}` });
  }
  if (REMOVAL_TRIGGERS.has(event.type)) out.push({ job: { name: 'advanceRemovals', data: { vmId: vmOf(event), eventId: event.id } }, jobId: `advance-${event.id}` });
  return out;
}

/** The repeat options of a schedule: its cron pattern in its time zone (or the test-only interval). */
export function repeatOptionsOf(schedule: Pick<BackupSchedule, 'cron' | 'timezone'>, env: NodeJS.ProcessEnv = process.env): { pattern: string; tz: string } | { every: number } {
  const every = Number(env[SCHEDULE_TEST_EVERY_ENV]);
  if (env[SCHEDULE_TEST_EVERY_ENV] && Number.isFinite(every) && every > 0) return { every };
  return { pattern: schedule.cron, tz: schedule.timezone };
}

/**
 * When a schedule fires next after `after`: BullMQ's own default repeat strategy (the job schedulers use
 * no other) on the schedule's cron pattern and IANA time zone, so this is exactly what the schedulers do.
 */
export function nextFireAfter(schedule: Pick<BackupSchedule, 'cron' | 'timezone'>, after: Date): Date {
  const millis = defaultRepeatStrategy(after.getTime(), { pattern: schedule.cron, tz: schedule.timezone });
  if (millis === undefined) throw new Error(`cron pattern "${schedule.cron}" in ${schedule.timezone} never fires`);
  return new Date(millis);
}

/**
 * The time a job scheduler's job fires for: its id is `repeat:<schedulerId>:<millis>`. The job's own
 * timestamp is when the previous fire created it (an hour or a day earlier), not when it was due.
 */
export function fireTimeOf(jobId: string, fallback: Date): Date {
  const millis = /^repeat:.*:(\d+)$/.exec(jobId)?.[1];
  return millis ? new Date(Number(millis)) : fallback;
}

/** Everything the host needs to remove one backup, from the VM's events (exact) and the read models (where). */
export async function buildRemovalJob(request: BackupRemovalStarted['data'], vmId: string, db: DataSource, store: EventStore): Promise<{ hostId: string; data: RemoveBackupJobData } | null> {
  const events = await store.readStream(Streams.vmBackups(vmId));
  const state = events.reduce((s, e) => backupDeletionDecider.evolve(s, { type: e.type, data: e.data }), backupDeletionDecider.initialState());
  const entry = state.removals[request.backupId];
  if (!entry || entry.removalJobId !== request.removalJobId) return null; // already over: a re-read event
  const x = state.backups[request.backupId];
  const backupRow = await db.query(`SELECT repository_id, host_id FROM backups WHERE id = $1`, [request.backupId]);
  const repositoryId: string | undefined = backupRow[0]?.repository_id;
  const repo = repositoryId ? await db.getRepository(BackupRepositoryView).findOne({ where: { id: repositoryId } }) : null;
  if (!repo) throw new Error(`the repository of backup ${request.backupId} is unknown`);
  const vm = await db.getRepository(VirtualMachineView).findOne({ where: { id: vmId } });
  const hostId: string = vm?.hostId ?? backupRow[0].host_id;
  const fileOf = (backupId: string, volumeId: string) => backupFile(vmId, state.backups[backupId].chainId, backupId, volumeId);
  const dirOf = (backupId: string) => posix.join(vmId, state.backups[backupId].chainId, backupId);
  const repository: RepositoryAccess = { repositoryId: repo.id, type: repo.type as RepositoryAccess['type'], address: repo.address, mountOptions: repo.mountOptions, encryptedCredentials: repo.encryptedCredentials };
  return {
    hostId,
    data: {
      vmId,
      backupId: request.backupId,
      removalJobId: request.removalJobId,
      mode: request.mode,
      forced: request.forced,
      domainName: vm?.name ?? null,
      checkpointName: x.checkpointName,
      repository,
      backupDir: dirOf(request.backupId),
      files: x.volumeIds.map((volumeId) => ({ volumeId, file: fileOf(request.backupId, volumeId) })),
      children: request.intoBackupIds.map((childId) => ({
        backupId: childId,
        dir: dirOf(childId),
        newParentBackupId: request.newParentBackupId,
        volumes: state.backups[childId].volumeIds
          .filter((volumeId) => x.volumeIds.includes(volumeId))
          .map((volumeId) => ({
            volumeId,
            file: fileOf(childId, volumeId),
            oldBackingFile: posix.relative(dirOf(childId), fileOf(request.backupId, volumeId)),
            newBackingFile: request.newParentBackupId ? posix.relative(dirOf(childId), fileOf(request.newParentBackupId, volumeId)) : null,
          })),
      })),
      timeoutSeconds: Number(await effectiveSetting(db, 'knib.timeout', repo.zoneId)),
    },
  };
}

export interface LifecycleDeps {
  store: EventStore;
  db: DataSource;
  handler: CommandHandler;
  redisUrl: string;
  queuePrefix: string;
  logger: Logger;
}

/**
 * Requests the backup a schedule fired for, as createBackup does. A fire that cannot take a backup (one of
 * the VM still runs, the host is down, ...) is skipped with a warning naming the fire and why: a
 * backup missed is something an operator must be able to see.
 */
export async function requestScheduledBackup(deps: Pick<LifecycleDeps, 'db' | 'handler' | 'logger'>, vmId: string, scheduleId: string, fireId: string, at: Date): Promise<string | null> {
  const skip = (why: string, level: 'log' | 'warn' = 'warn') => {
    deps.logger[level](`schedule ${scheduleId} of VM ${vmId}: fire ${fireId} (due ${at.toISOString()}) skipped: ${why}`);
    return null;
  };
  const schedule = (await deps.handler.load(Streams.vmSchedules(vmId), backupScheduleDecider)).state.schedules[scheduleId];
  // A fire already queued when the schedule was deleted: nothing was missed.
  if (!schedule) return skip('the schedule was deleted', 'log');
  const vm = await deps.db.getRepository(VirtualMachineView).findOne({ where: { id: vmId } });
  if (!vm) return skip('the virtual machine is unknown');
  if (!vm.backupOfferingId) return skip('the virtual machine is not assigned to a backup offering');
  const offering = await deps.db.getRepository(BackupOfferingView).findOne({ where: { id: vm.backupOfferingId } });
  const native = offering ? await deps.db.getRepository(NativeOfferingView).findOne({ where: { id: offering.externalId } }) : null;
  if (!offering?.repositoryId || !native) return skip('the backup offering has no repository');
  const host = await deps.db.getRepository(HostView).findOne({ where: { id: vm.hostId } });
  if (!host || host.state !== 'Up') return skip(`the host is ${host?.state ?? 'unknown'}`);
  const backupId = deterministicId(fireId, 'backup');
  const jobId = deterministicId(fireId, 'job');
  const { state } = await deps.handler.load(Streams.vmBackups(vmId), backupChainDecider);
  // A fire while the previous backup runs does not stack another one up.
  if (state.pending && state.pending.backupId !== backupId) return skip(`backup ${state.pending.backupId} of the VM is still running`);
  const chainSize = native.backupChainSize ?? Number(await effectiveSetting(deps.db, 'backup.chain.size', vm.zoneId));
  const command = {
    type: 'RequestBackup' as const,
    data: {
      backupId,
      vmId,
      jobId,
      chainSize,
      isolated: schedule.isolated,
      quiesce: schedule.quiesce,
      intervalType: schedule.intervalType,
      name: null,
      description: `${schedule.intervalType} schedule ${scheduleId}`,
      volumes: vm.volumes,
      fullOnly: vm.volumes.some((v) => v.format !== 'qcow2'),
      offeringId: offering.id,
      repositoryId: offering.repositoryId,
      hostId: vm.hostId,
      at,
    },
  };
  try {
    backupChainDecider.decide(command, state);
  } catch (error) {
    if (error instanceof DomainError) return skip(error.message);
    throw error;
  }
  const job = await deps.handler.load(Streams.asyncJob(jobId), asyncJobDecider);
  if (job.state.status === 'absent') {
    await deps.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, { type: 'CreateAsyncJob', data: { jobId, command: 'createBackup', userId: schedule.userId, instanceType: 'Backup', instanceId: backupId, at } }, { eventId: () => deterministicId(fireId, 'job-created') });
  }
  try {
    await deps.handler.handle(Streams.vmBackups(vmId), backupChainDecider, command, { eventId: () => deterministicId(fireId, 'requested'), metadata: { scheduleId } });
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    await deps.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, { type: 'FailAsyncJob', data: { jobId, errorCode: 536, errorText: error.message, at } });
    return skip(error.message);
  }
  deps.logger.log(`schedule ${scheduleId} of VM ${vmId}: fire ${fireId} (due ${at.toISOString()}): backup ${backupId} (${schedule.intervalType}) requested`);
  return backupId;
}

/** The lifecycle queue, its worker, and what the dispatcher calls for each event. */
export class Lifecycle {
  private readonly queue: Queue;
  private readonly worker: Worker;
  private readonly removals: BackupRemovalUseCase;

  constructor(private readonly deps: LifecycleDeps) {
    const connection = { url: deps.redisUrl, maxRetriesPerRequest: null };
    this.queue = new Queue(LIFECYCLE_QUEUE, { connection, prefix: deps.queuePrefix });
    this.removals = new BackupRemovalUseCase(deps.handler);
    this.worker = new Worker(LIFECYCLE_QUEUE, (job: Job) => this.process(job), { connection, prefix: deps.queuePrefix, concurrency: 4 });
    this.worker.on('failed', (job, error) => deps.logger.error(`lifecycle job ${job?.name} ${job?.id} failed (attempt ${job?.attemptsMade}): ${error.message}`));
    this.worker.on('error', (error) => deps.logger.error(`lifecycle worker: ${error.message}`));
  }

  private async process(job: Job): Promise<unknown> {
    const j = { name: job.name, data: job.data } as LifecycleJob;
    switch (j.name) {
      case 'advanceRemovals':
        return (await this.removals.advance(j.data.vmId, j.data.eventId, new Date())).length;
      case 'applyRetention':
        return (await this.removals.applyRetention(j.data.vmId, j.data.backupId, new Date())).length;
      case 'scheduledBackup':
        return requestScheduledBackup(this.deps, j.data.vmId, j.data.scheduleId, String(job.id), fireTimeOf(String(job.id), new Date(job.timestamp)));
      default:
        throw new Error(`unknown lifecycle job ${job.name}`);
    }
  }

  /** Called by the dispatcher for every event, after its own jobs; idempotent (deterministic job ids, upserts). */
  async onEvent(event: RecordedEvent, hostQueue: (hostId: string) => Queue, forHost: <T extends object>(data: T) => T): Promise<void> {
    for (const { job, jobId } of lifecycleJobsFor(event)) {
      await this.queue.add(job.name, job.data, { jobId, attempts: 5, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } });
    }
    switch (event.type) {
      case 'BackupRemovalStarted': {
        const request = event.data as BackupRemovalStarted['data'];
        const built = await buildRemovalJob(request, vmOf(event), this.deps.db, this.deps.store);
        if (!built) return;
        await hostQueue(built.hostId).add('removeBackup', forHost(built.data), { jobId: removalHostJobId(request.removalJobId), attempts: 3, backoff: { type: 'fixed', delay: 2000 }, removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 30 * 24 * 3600 } });
        this.deps.logger.log(`dispatcher: removal ${request.removalJobId} (${request.mode}${request.intoBackupIds.length ? ` into ${request.intoBackupIds.join(', ')}` : ''}) of backup ${request.backupId} -> host ${built.hostId}`);
        return;
      }
      case 'BackupScheduleCreated':
      case 'BackupScheduleUpdated': {
        const s = event.data as BackupSchedule;
        await this.queue.upsertJobScheduler(scheduleSchedulerId(s.scheduleId), repeatOptionsOf(s), { name: 'scheduledBackup', data: { vmId: s.vmId, scheduleId: s.scheduleId }, opts: { attempts: 3, backoff: { type: 'fixed', delay: 2000 }, removeOnComplete: { age: 24 * 3600 }, removeOnFail: { age: 7 * 24 * 3600 } } });
        const repeat = repeatOptionsOf(s);
        const next = 'pattern' in repeat ? `next fire ${nextFireAfter(s, new Date()).toISOString()}` : `test interval: every ${repeat.every} ms`;
        this.deps.logger.log(`dispatcher: schedule ${s.scheduleId} (${s.intervalType} ${s.schedule} ${s.timezone}, cron "${s.cron}") of VM ${s.vmId} is running (${next})`);
        return;
      }
      case 'BackupScheduleDeleted': {
        const d = event.data as BackupScheduleDeleted['data'];
        await this.queue.removeJobScheduler(scheduleSchedulerId(d.scheduleId));
        this.deps.logger.log(`dispatcher: schedule ${d.scheduleId} of VM ${d.vmId} removed`);
        return;
      }
    }
  }

  async stop(): Promise<void> {
    await this.worker.close();
    await this.queue.close();
  }
}
