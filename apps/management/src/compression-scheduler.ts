import { Queue } from 'bullmq';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { CompressionUseCase, CompressionPolicySource } from '@strata/application';
import { CompressionAttemptSettings, CompressionJobStatus, CompressionLibrary, CompressionSideFile, CompressionStarted, DomainError, findSetting, planCompressionStarts, sideFilesLeftBehind } from '@strata/domain';
import { Checkpoint, EventStore } from '@strata/event-store';
import {
  CompressionHostJob,
  compressionCancelQueueJobId,
  compressionDiscardQueueJobId,
  compressionQueueJobId,
  DiscardSideFilesJobData,
  FinalizeCompressionJobData,
  hostCompressionQueueName,
  RepositoryAccess,
  StartCompressionJobData,
} from '@strata/jobs';
import { BackupRepositoryView, BackupView, effectiveSetting, hostScopeKey, ProjectionWaiter } from '@strata/read-models';
import { Logger } from '@strata/config';
import { backupFile } from './host-job-builder';

const SCHEDULER_LOCK_KEY = 0x5374_437a; // "StCz": one active compression scheduler per database
const KEEP = { removeOnComplete: { age: 7 * 24 * 3600 }, removeOnFail: { age: 30 * 24 * 3600 } };

export interface CompressionSchedulerDeps {
  store: EventStore;
  db: DataSource;
  databaseUrl: string;
  redisUrl: string;
  queuePrefix: string;
  compression: CompressionUseCase;
  logger: Logger;
}

export interface CompressionSchedulerOptions {
  /** Between two rounds. Default 500 ms. */
  intervalMs?: number;
  /** An attempt whose host said nothing this long after its deadline counts as failed. Default 30 s. */
  lapseGraceMs?: number;
  clock?: () => Date;
}

/** The backup.compression.* settings as one snapshot (global values, zone and host overrides where the setting allows). */
export class CompressionSettings {
  constructor(private readonly rows: { name: string; scope_key: string; value: string }[]) {}

  static async read(db: DataSource): Promise<CompressionSettings> {
    return new CompressionSettings(await db.query(`SELECT name, scope_key, value FROM configuration_values WHERE name LIKE 'backup.compression.%'`));
  }

  value(name: string, zoneId: string | null = null, hostId: string | null = null): string {
    const def = findSetting(name);
    if (!def) throw new Error(`unknown setting ${name}`);
    const own = hostId && def.hostOverride ? hostScopeKey(hostId) : zoneId && def.scope === 'zone' ? zoneId : null;
    const overridden = own ? this.rows.find((r) => r.name === name && r.scope_key === own) : undefined;
    return (overridden ?? this.rows.find((r) => r.name === name && r.scope_key === 'global'))?.value ?? def.defaultValue;
  }

  number(name: string, zoneId: string | null = null, hostId: string | null = null): number {
    return Number(this.value(name, zoneId, hostId));
  }

  /** backup.compression.max.concurrent.compressions.per.host as it applies on one host. */
  perHost(hostId: string): number {
    return this.number('backup.compression.max.concurrent.compressions.per.host', null, hostId);
  }

  get taskEnabled(): boolean {
    return this.value('backup.compression.task.enabled') === 'true';
  }

  attempt(zoneId: string): CompressionAttemptSettings {
    return {
      coroutines: this.number('backup.compression.coroutines'),
      rateLimitMBps: this.number('backup.compression.rate.limit'),
      minimumFreeStorage: this.number('backup.compression.minimum.free.storage', zoneId),
      timeoutSeconds: this.number('backup.compression.timeout'),
    };
  }
}

/** Retry settings as the use case needs them (read when an attempt fails). */
export function readModelCompressionPolicy(db: DataSource): CompressionPolicySource {
  return {
    async retryPolicy() {
      const maxRetries = Number(await effectiveSetting(db, 'backup.compression.max.job.retries', null));
      const minutes = Number(await effectiveSetting(db, 'backup.compression.retry.interval', null));
      return { maxRetries, retryIntervalMs: Math.round(minutes * 60_000) };
    },
  };
}

interface JobRow {
  id: string;
  backup_id: string;
  vm_id: string;
  zone_id: string;
  type: 'Starting' | 'Finalizing';
  status: CompressionJobStatus;
  library: CompressionLibrary;
  attempts: number;
  host_id: string | null;
  preferred_host_id: string | null;
  scheduled_date: Date;
  deadline: Date | null;
  cancel_requested: boolean;
  side_files: CompressionSideFile[];
  settings: CompressionAttemptSettings | null;
}

/**
 * The compression process manager of the management plane, one active instance per database (a
 * PostgreSQL advisory lock; others stand by). Each round:
 *
 * 1. schedules a Starting job for every completed backup of a `compress` offering that has none yet;
 * 2. fails attempts whose host reported nothing by their deadline plus a grace period (a dead agent);
 * 3. unless backup.compression.task.enabled is false, starts what fits: the Running jobs of the read
 *    model are counted against the per-host and per-zone limits (planCompressionStarts), each start is an
 *    event decided on the VM's stream (which refuses a Finalizing swap while the chain is read), and the
 *    attempt goes to the host's compression queue;
 * 4. passes cancellations on to the hosts of running attempts;
 * 5. has a host of the zone remove the side files of jobs that ended without compressing (sideFilesLeftBehind).
 *
 * Why the limits hold, restarts included: only this instance starts attempts; before it counts, the read
 * models include every start it (or an earlier instance) appended: at start-up it waits until the
 * projector has applied every event in the store, and after each round that started something it waits for
 * that round's last event before the next round. A job leaves `Running` only when its host reported the
 * attempt's end, after its qemu-img exited (or after the deadline plus grace, when the agent's own timer
 * has killed it, or the agent died and took qemu-img with it). So the Running count never falls below
 * the compressions that really run.
 */
export class CompressionScheduler {
  private readonly waiter: ProjectionWaiter;
  private readonly queues = new Map<string, Queue>();
  private readonly intervalMs: number;
  private readonly lapseGraceMs: number;
  private readonly clock: () => Date;
  private lockClient: Client | null = null;
  private lockLost = false;
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();
  private lastAppend: Checkpoint | null = null;
  private readonly refusals = new Map<string, string>();
  /** Jobs whose side files a host was asked to discard, and which host: asked again only when that host is no longer Up. */
  private readonly discards = new Map<string, string>();

  constructor(
    private readonly deps: CompressionSchedulerDeps,
    options: CompressionSchedulerOptions = {},
  ) {
    this.waiter = new ProjectionWaiter(deps.databaseUrl, deps.store);
    this.intervalMs = options.intervalMs ?? 500;
    this.lapseGraceMs = options.lapseGraceMs ?? 30_000;
    this.clock = options.clock ?? (() => new Date());
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.loop = this.run().catch((error: Error) => this.deps.logger.error(`compression scheduler stopped: ${error.message}`));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.waiter.stop();
    await this.dropLock();
    for (const q of this.queues.values()) await q.close();
    this.queues.clear();
  }

  private async run(): Promise<void> {
    await this.waiter.start();
    while (!this.stopped) {
      try {
        if (!(await this.acquireLock())) return;
      } catch (error) {
        this.deps.logger.error(`compression scheduler: cannot take its lock: ${(error as Error).message}; trying again in 1 s`);
        await this.dropLock();
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      await this.catchUp();
      if (this.stopped) return;
      await this.reenqueueRunning();
      this.deps.logger.log('compression scheduler active');
      // Without its lock another instance may be active: this one stops deciding at once.
      while (!this.stopped && !this.lockLost) {
        try {
          await this.round();
        } catch (error) {
          this.deps.logger.error(`compression round: ${(error as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, this.intervalMs));
      }
      if (this.lockLost && !this.stopped) {
        this.deps.logger.error('compression scheduler: lost the connection that holds its lock; standing by to take it again');
        await this.dropLock();
      }
    }
  }

  private async dropLock(): Promise<void> {
    const client = this.lockClient;
    this.lockClient = null;
    await client?.end().catch(() => undefined);
  }

  private async acquireLock(): Promise<boolean> {
    const client = new Client({ connectionString: this.deps.databaseUrl, application_name: 'strata-compression-scheduler' });
    this.lockLost = false;
    const lost = () => {
      if (this.lockClient === client) this.lockLost = true;
    };
    client.on('error', lost);
    client.on('end', lost);
    this.lockClient = client;
    await client.connect();
    let announced = false;
    while (!this.stopped) {
      const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1) AS ok`, [SCHEDULER_LOCK_KEY]);
      if (rows[0].ok) return true;
      if (!announced) this.deps.logger.log('compression scheduler: another instance is active, standing by');
      announced = true;
      await new Promise((r) => setTimeout(r, 1000));
    }
    return false;
  }

  /** Waits until the read models hold every event in the store now (so every start an earlier instance made is counted). */
  private async catchUp(): Promise<void> {
    const rows: { position: string }[] = await this.deps.db.query(`SELECT position FROM projection_checkpoints WHERE name = 'read-models'`);
    let last: Checkpoint | null = rows[0]?.position ?? null;
    for (;;) {
      const batch = await this.deps.store.readAll(last, 1000);
      if (batch.length === 0) break;
      last = batch[batch.length - 1].position;
    }
    if (last === null) return;
    while (!this.stopped && !(await this.waiter.waitFor(last, 10_000))) this.deps.logger.log('compression scheduler: waiting for the projector to catch up');
    this.lastAppend = last;
  }

  private async round(): Promise<void> {
    // The session that holds the lock must still be there (a dead connection released it).
    try {
      await this.lockClient!.query('SELECT 1');
    } catch {
      this.lockLost = true;
      return;
    }
    // Our own starts must be in the read models before we count again.
    if (this.lastAppend && !(await this.waiter.waitFor(this.lastAppend, 2000))) return;
    const now = this.clock();
    const settings = await CompressionSettings.read(this.deps.db);
    await this.scheduleCompletedBackups(now);
    await this.lapseSilentAttempts(now);
    if (settings.taskEnabled) await this.startWhatFits(now, settings);
    await this.passOnCancellations();
    await this.discardLeftSideFiles();
  }

  /** Step 1: a Starting job for each completed backup of a `compress` offering that has none. */
  private async scheduleCompletedBackups(now: Date): Promise<void> {
    const rows: { id: string; vm_id: string; zone_id: string; library: CompressionLibrary }[] = await this.deps.db.query(
      `SELECT b.id, b.vm_id, r.zone_id, n.compression_library AS library
         FROM backups b
         JOIN backup_offerings o ON o.id = b.offering_id
         JOIN native_backup_offerings n ON n.id = o.external_id
         JOIN backup_repositories r ON r.id = b.repository_id
        WHERE n.compress AND b.status IN ('BackedUp', 'Restoring') AND b.compression_status = 'Uncompressed'
          AND NOT EXISTS (SELECT 1 FROM backup_compression_jobs j WHERE j.backup_id = b.id)
        ORDER BY b.completed, b.id LIMIT 200`,
    );
    for (const b of rows) {
      try {
        const result = await this.deps.compression.schedule(b.vm_id, b.id, b.zone_id, b.library, now);
        if (result.append) this.lastAppend = result.append.position;
        if (result.events.length) this.deps.logger.log(`compression of backup ${b.id} scheduled (${b.library})`);
      } catch (error) {
        this.deps.logger.error(`compression of backup ${b.id} not scheduled: ${(error as Error).message}`);
      }
    }
  }

  /** Step 2: attempts whose host said nothing by the deadline (plus grace) failed. */
  private async lapseSilentAttempts(now: Date): Promise<void> {
    const rows: JobRow[] = await this.deps.db.query(`SELECT * FROM backup_compression_jobs WHERE status = 'Running' AND deadline < $1`, [new Date(now.getTime() - this.lapseGraceMs)]);
    for (const j of rows) {
      const reason = `host ${j.host_id} reported no outcome by the attempt's deadline (${j.deadline?.toISOString()}) and ${this.lapseGraceMs / 1000} s more`;
      await this.deps.compression.lapse(j.vm_id, j.id, j.attempts, j.host_id ?? '', reason, now).catch((e: Error) => this.deps.logger.error(`compression job ${j.id}: ${e.message}`));
      this.deps.logger.warn(`compression job ${j.id} attempt ${j.attempts}: ${reason}`);
    }
  }

  /** Step 3: start the due jobs that fit the limits. */
  private async startWhatFits(now: Date, settings: CompressionSettings): Promise<void> {
    const due: JobRow[] = await this.deps.db.query(`SELECT * FROM backup_compression_jobs WHERE status = 'Scheduled' AND scheduled_date <= $1 ORDER BY scheduled_date, id LIMIT 1000`, [now]);
    if (due.length === 0) {
      this.refusals.clear();
      return;
    }
    const running: { id: string; type: 'Starting' | 'Finalizing'; zone_id: string; host_id: string }[] = await this.deps.db.query(
      `SELECT id, type, zone_id, host_id FROM backup_compression_jobs WHERE status = 'Running'`,
    );
    const hosts: { id: string; zone_id: string; state: string }[] = await this.deps.db.query(`SELECT id, zone_id, state FROM hosts`);
    const plan = planCompressionStarts(
      due.map((j) => ({ jobId: j.id, type: j.type, zoneId: j.zone_id, preferredHostId: j.preferred_host_id, scheduledAt: new Date(j.scheduled_date) })),
      running.map((r) => ({ jobId: r.id, type: r.type, zoneId: r.zone_id, hostId: r.host_id })),
      hosts.map((h) => ({ hostId: h.id, zoneId: h.zone_id, up: h.state === 'Up' })),
      { perHost: (hostId) => settings.perHost(hostId), perZone: (zoneId) => settings.number('backup.compression.max.concurrent.operations', zoneId) },
      now,
    );
    const byId = new Map(due.map((j) => [j.id, j]));
    for (const id of this.refusals.keys()) if (!byId.has(id)) this.refusals.delete(id);
    for (const p of plan) {
      const job = byId.get(p.jobId)!;
      let started: CompressionStarted | undefined;
      try {
        const result = await this.deps.compression.start(job.vm_id, job.id, p.hostId, settings.attempt(job.zone_id), now);
        if (result.append) this.lastAppend = result.append.position;
        started = result.events.find((e): e is CompressionStarted => e.type === 'CompressionStarted');
        this.refusals.delete(job.id);
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        // e.g. a Finalizing swap while a backup or restore reads the chain: it waits for a later round.
        if (this.refusals.get(job.id) !== error.message) this.deps.logger.log(`compression job ${job.id} (${job.type}) waits: ${error.message}`);
        this.refusals.set(job.id, error.message);
        continue;
      }
      if (!started) continue;
      await this.enqueue({ ...job, attempts: started.data.attempt, host_id: p.hostId, deadline: new Date(started.data.deadline), settings: started.data.settings });
      this.deps.logger.log(`compression job ${job.id} (${job.type}) of backup ${job.backup_id}: attempt ${started.data.attempt} -> host ${p.hostId}`);
    }
  }

  /** Step 4: running attempts of cancelled jobs are told to stop (idempotent by job id). */
  private async passOnCancellations(): Promise<void> {
    const rows: JobRow[] = await this.deps.db.query(`SELECT * FROM backup_compression_jobs WHERE status = 'Running' AND cancel_requested`);
    for (const j of rows) {
      if (!j.host_id) continue;
      const job: CompressionHostJob = { name: 'cancelCompression', data: { jobId: j.id, attempt: j.attempts } };
      await this.queue(j.host_id).add(job.name, job.data, { jobId: compressionCancelQueueJobId(j.id, j.attempts), attempts: 1, ...KEEP });
    }
  }

  /**
   * Step 5: side files nothing will swap in (the job failed for good, or was cancelled) go, removed by a
   * host (the one of the job's last attempt when it is Up, else any Up host of the zone: all reach the
   * zone's repositories). The host reports what it removed, which ends this for the job; BullMQ retries a
   * host that could not reach the repository, and another host is asked when that one goes down.
   */
  private async discardLeftSideFiles(): Promise<void> {
    // The SQL narrows to what sideFilesLeftBehind accepts (so old, finished jobs never crowd the batch).
    const rows: JobRow[] = await this.deps.db.query(
      `SELECT * FROM backup_compression_jobs WHERE status IN ('Failed', 'Cancelled') AND NOT side_files_discarded AND (type = 'Finalizing' OR attempts > 0) ORDER BY removed, id LIMIT 100`,
    );
    const left = rows.filter((j) => sideFilesLeftBehind({ type: j.type, status: j.status, attempts: j.attempts, sideFilesDiscarded: false }));
    for (const id of this.discards.keys()) if (!left.some((j) => j.id === id)) this.discards.delete(id);
    if (left.length === 0) return;
    const up: { id: string; zone_id: string }[] = await this.deps.db.query(`SELECT id, zone_id FROM hosts WHERE state = 'Up' ORDER BY id`);
    for (const j of left) {
      const inZone = up.filter((h) => h.zone_id === j.zone_id).map((h) => h.id);
      const hostId = j.host_id && inZone.includes(j.host_id) ? j.host_id : inZone[0];
      if (!hostId || this.discards.get(j.id) === hostId) continue;
      this.discards.set(j.id, hostId);
      try {
        const data = await this.discardJob(j);
        await this.queue(hostId).add('discardCompressionSideFiles', data, { jobId: compressionDiscardQueueJobId(j.id, hostId), attempts: 8, backoff: { type: 'exponential', delay: 5000 }, ...KEEP });
        this.deps.logger.log(`compression job ${j.id} (${j.type}) of backup ${j.backup_id} is ${j.status}: host ${hostId} removes the side files it left`);
      } catch (error) {
        this.deps.logger.error(`compression job ${j.id}: its side files cannot be discarded: ${(error as Error).message}`);
      }
    }
  }

  private async discardJob(j: JobRow): Promise<DiscardSideFilesJobData> {
    const backup = await this.deps.db.getRepository(BackupView).findOneOrFail({ where: { id: j.backup_id } });
    const repository = await this.repositoryAccess(backup.repositoryId);
    const files = j.side_files.length ? j.side_files.map((f) => f.file) : backup.volumes.map((v) => backupFile(backup.vmId, backup.chainId, backup.id, v.volumeId));
    return { jobId: j.id, backupId: j.backup_id, vmId: j.vm_id, repository, files };
  }

  private async repositoryAccess(repositoryId: string): Promise<RepositoryAccess> {
    const repo = await this.deps.db.getRepository(BackupRepositoryView).findOneOrFail({ where: { id: repositoryId } });
    return { repositoryId: repo.id, type: repo.type as RepositoryAccess['type'], address: repo.address, mountOptions: repo.mountOptions, encryptedCredentials: repo.encryptedCredentials };
  }

  /** After a restart: every Running attempt is (again) on its host's queue; a job id already there is not added twice. */
  private async reenqueueRunning(): Promise<void> {
    const rows: JobRow[] = await this.deps.db.query(`SELECT * FROM backup_compression_jobs WHERE status = 'Running' AND NOT cancel_requested`);
    for (const j of rows) await this.enqueue(j).catch((e: Error) => this.deps.logger.error(`compression job ${j.id}: not re-enqueued: ${e.message}`));
  }

  private queue(hostId: string): Queue {
    const name = hostCompressionQueueName(hostId);
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: { url: this.deps.redisUrl, maxRetriesPerRequest: null }, prefix: this.deps.queuePrefix });
      this.queues.set(name, q);
    }
    return q;
  }

  /** The attempt's host job, from the job row and the backup's read model. */
  private async enqueue(j: JobRow): Promise<void> {
    if (!j.host_id || !j.deadline || !j.settings) throw new Error(`compression job ${j.id} has no running attempt`);
    const backup = await this.deps.db.getRepository(BackupView).findOneOrFail({ where: { id: j.backup_id } });
    const repository = await this.repositoryAccess(backup.repositoryId);
    const base = { jobId: j.id, backupId: j.backup_id, vmId: j.vm_id, attempt: j.attempts, repository, deadline: new Date(j.deadline).toISOString(), timeoutSeconds: j.settings.timeoutSeconds };
    let job: CompressionHostJob;
    if (j.type === 'Starting') {
      const data: StartCompressionJobData = {
        ...base,
        volumes: backup.volumes.map((v) => ({ volumeId: v.volumeId, file: backupFile(backup.vmId, backup.chainId, backup.id, v.volumeId) })),
        library: j.library,
        coroutines: j.settings.coroutines,
        rateLimitMBps: j.settings.rateLimitMBps,
        minimumFreeStorage: j.settings.minimumFreeStorage,
        backupSizeBytes: backup.size,
      };
      job = { name: 'startCompression', data };
    } else {
      const data: FinalizeCompressionJobData = { ...base, volumes: j.side_files };
      job = { name: 'finalizeCompression', data };
    }
    await this.queue(j.host_id).add(job.name, job.data, { jobId: compressionQueueJobId(j.id, j.attempts), attempts: 1, ...KEEP });
  }
}

