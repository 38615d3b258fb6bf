import { Queue } from 'bullmq';
import { DataSource } from 'typeorm';
import { BackupOfferingDeleted, BackupOfferingImportRequested, BackupRequested, ConsolidationRequested, RestoreCompleted, RestoreRequested, Streams } from '@strata/domain';
import { Checkpoint, EventStore, RecordedEvent, Subscription } from '@strata/event-store';
import { consolidationJobId, ForgetDomainJobData, forgetDomainJobId, hostQueueName, ManagementJob, managementJobId } from '@strata/jobs';
import { RestoreView } from '@strata/read-models';
import { HostSecrets } from './host-secrets';
import { buildBackupJob, buildConsolidationJob, buildRestoreJob } from './host-job-builder';
import type { Lifecycle } from './lifecycle';

export interface Logger {
  log(message: string): void;
  error(message: string): void;
}

interface QueuedJob {
  job: ManagementJob;
  jobId: string;
}

/** Which events ask for which job. Pure, so the mapping is unit-tested without Redis. */
export function jobsFor(event: RecordedEvent): QueuedJob[] {
  switch (event.type) {
    case 'BackupOfferingImportRequested': {
      const d = event.data as BackupOfferingImportRequested['data'];
      return [{ job: { name: 'importBackupOffering', data: { offeringId: d.offeringId, jobId: d.jobId } }, jobId: managementJobId.importBackupOffering(d.jobId) }];
    }
    case 'BackupOfferingDeleted': {
      const d = event.data as BackupOfferingDeleted['data'];
      return [
        {
          job: { name: 'releaseNativeOffering', data: { offeringId: d.offeringId, nativeOfferingId: d.nativeOfferingId } },
          jobId: managementJobId.releaseNativeOffering(d.offeringId),
        },
      ];
    }
    default:
      return [];
  }
}

/**
 * The process manager: follows the event store and turns events that ask for work into BullMQ jobs.
 * Its checkpoint is saved only after the jobs of a batch are in Redis, and job ids are deterministic,
 * so a crash at any point re-adds at most jobs that BullMQ already has (and ignores).
 */
export class Dispatcher {
  private subscription: Subscription | null = null;
  private stopped = false;
  private readonly hostQueues = new Map<string, Queue>();
  static readonly CHECKPOINT = 'dispatcher';
  /** Deletions, retention and schedules (lifecycle.ts); set by the management plane. */
  lifecycle: Lifecycle | null = null;

  constructor(
    private readonly store: EventStore,
    private readonly db: DataSource,
    private readonly queue: Queue,
    private readonly logger: Logger,
    /** Seals repository credentials for the hosts; null only where no job carries any (tests). */
    private readonly hostSecrets: HostSecrets | null = null,
    private readonly hostQueue: (hostId: string) => Queue = (hostId) => {
      const name = hostQueueName(hostId);
      const existing = this.hostQueues.get(name);
      if (existing) return existing;
      const created = new Queue(name, queue.opts);
      this.hostQueues.set(name, created);
      return created;
    },
  ) {}

  /** Re-encrypts the job's repository credentials from the master key to the host key. */
  private forHost<T extends object>(data: T): T {
    if (this.hostSecrets) return this.hostSecrets.seal(data);
    if ((data as { repository?: { encryptedCredentials: string | null } }).repository?.encryptedCredentials) {
      throw new Error('a host job carries repository credentials but the dispatcher has no master key to seal them for the host');
    }
    return data;
  }

  async start(): Promise<void> {
    this.stopped = false;
    void this.follow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.subscription?.stop();
    for (const q of this.hostQueues.values()) await q.close();
  }

  private async checkpoint(): Promise<Checkpoint | null> {
    const rows: { position: string }[] = await this.db.query(`SELECT position FROM projection_checkpoints WHERE name = $1`, [Dispatcher.CHECKPOINT]);
    return rows[0]?.position ?? null;
  }

  private async follow(): Promise<void> {
    while (!this.stopped) {
      const from = await this.checkpoint();
      this.subscription = this.store.subscribeToAll({ from, onBatch: (events) => this.dispatch(events) });
      try {
        await this.subscription.done;
      } catch (error) {
        if (this.stopped) return;
        this.logger.error(`dispatcher: ${(error as Error).message}; resuming from the checkpoint in 1 s`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  private async dispatch(events: RecordedEvent[]): Promise<void> {
    for (const event of events) {
      for (const { job, jobId } of jobsFor(event)) {
        await this.queue.add(job.name, job.data, {
          jobId,
          attempts: 5,
          backoff: { type: 'exponential', delay: 1000 },
          removeOnComplete: { age: 7 * 24 * 3600 },
          removeOnFail: { age: 30 * 24 * 3600 },
        });
        this.logger.log(`dispatcher: ${event.type} on ${event.streamId} -> job ${job.name} ${jobId}`);
      }
      if (event.type === 'BackupRequested') {
        const request = event.data as BackupRequested['data'];
        const data = await buildBackupJob(request, this.db, this.store);
        // Job id = backup id: a re-dispatched request is the same job, never a second backup.
        await this.hostQueue(request.hostId).add('backup', this.forHost(data), { jobId: request.backupId, attempts: 1, removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 30 * 24 * 3600 } });
        this.logger.log(`dispatcher: backup ${request.backupId} (${request.type}) of VM ${request.vmId} -> host ${request.hostId}`);
      }
      if (event.type === 'RestoreRequested') {
        const request = event.data as RestoreRequested['data'];
        const data = await buildRestoreJob(request, this.db);
        // Job id = restore id: a re-dispatched request is the same restore.
        await this.hostQueue(request.hostId).add('restore', this.forHost(data), { jobId: request.restoreId, attempts: 1, removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 30 * 24 * 3600 } });
        this.logger.log(`dispatcher: restore ${request.restoreId} (${request.kind}${request.quick ? ', quick' : ''}) of backup ${request.backupId} -> host ${request.hostId}`);
      }
      if (event.type === 'ConsolidationRequested') {
        const request = event.data as ConsolidationRequested['data'];
        const vmId = event.streamId.slice(Streams.vmBackups('').length);
        const data = await buildConsolidationJob(request, vmId, this.db);
        await this.hostQueue(request.hostId).add('consolidate', this.forHost(data), { jobId: consolidationJobId(request.restoreId), attempts: 3, backoff: { type: 'fixed', delay: 5000 }, removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 30 * 24 * 3600 } });
        this.logger.log(`dispatcher: consolidation of quick restore ${request.restoreId} (${request.domainName}) -> host ${request.hostId}`);
      }
      if (event.type === 'RestoreCompleted' && (event.data as RestoreCompleted['data']).movedFromHostId) {
        const done = event.data as RestoreCompleted['data'];
        const moved = await this.db.getRepository(RestoreView).findOneOrFail({ where: { id: done.restoreId } });
        const data: ForgetDomainJobData = { restoreId: done.restoreId, vmId: done.targetVmId, domainName: moved.domainName, movedToHostId: moved.hostId };
        await this.hostQueue(done.movedFromHostId!).add('forgetDomain', data, { jobId: forgetDomainJobId(done.restoreId), attempts: 3, backoff: { type: 'fixed', delay: 5000 }, removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 30 * 24 * 3600 } });
        this.logger.log(`dispatcher: ${moved.domainName} runs on host ${moved.hostId} after quick restore ${done.restoreId}; host ${done.movedFromHostId} removes its definition`);
      }
      if (this.lifecycle) await this.lifecycle.onEvent(event, (hostId) => this.hostQueue(hostId), (data) => this.forHost(data));
    }
    await this.db.query(
      `INSERT INTO projection_checkpoints (name, position, updated) VALUES ($1, $2, now())
       ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated = EXCLUDED.updated`,
      [Dispatcher.CHECKPOINT, events[events.length - 1].position],
    );
  }
}
