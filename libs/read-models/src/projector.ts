import { Client } from 'pg';
import { DataSource, EntityManager } from 'typeorm';
import { Checkpoint, EventStore, RecordedEvent, Subscription } from '@strata/event-store';
import { READ_MODEL_TABLES } from './entities';
import { Projection } from './projections';
import { BatchedSqlExecutor } from './projections/batched-sql';

export const PROJECTED_CHANNEL = 'strata_projected';
const PROJECTOR_LOCK_KEY = 0x5374_7261; // "Stra": one active projector per database

export interface ProjectorLogger {
  log(message: string): void;
  error(message: string): void;
}

export interface ProjectorOptions {
  name?: string;
  batchSize?: number;
  logger?: ProjectorLogger;
}

/** Another projector advanced the checkpoint under us: this instance must stop applying. */
export class ProjectorFencedError extends Error {
  override readonly name = 'ProjectorFencedError';
}

/**
 * Keeps the read models current. Each batch of events and the checkpoint after it are written in one
 * transaction, so a crash at any moment leaves the read models exactly at the checkpoint. A session
 * advisory lock keeps a second instance in standby, and the checkpoint is compared-and-set inside the
 * transaction so that even a misconfigured second instance cannot apply a batch twice.
 */
export class Projector {
  readonly name: string;
  private readonly batchSize: number;
  private readonly logger: ProjectorLogger;
  private readonly byType = new Map<string, Projection[]>();
  private subscription: Subscription | null = null;
  private lockClient: Client | null = null;
  private stopped = false;
  private caughtUpWaiters: (() => void)[] = [];
  private caughtUp = false;
  private appliedEvents = 0;

  constructor(
    private readonly store: EventStore,
    private readonly dataSource: DataSource,
    projections: Projection[],
    options: ProjectorOptions = {},
  ) {
    this.name = options.name ?? 'read-models';
    this.batchSize = options.batchSize ?? 1000;
    this.logger = options.logger ?? { log: (m) => console.log(m), error: (m) => console.error(m) };
    for (const p of projections) {
      for (const type of p.handles) this.byType.set(type, [...(this.byType.get(type) ?? []), p]);
    }
  }

  get eventsApplied(): number {
    return this.appliedEvents;
  }

  async checkpoint(): Promise<Checkpoint | null> {
    const rows: { position: string }[] = await this.dataSource.query(`SELECT position FROM projection_checkpoints WHERE name = $1`, [this.name]);
    return rows[0]?.position ?? null;
  }

  /** Empties every read model and the checkpoint in one transaction; the next run replays from zero. */
  async reset(): Promise<void> {
    await this.dataSource.transaction(async (em) => {
      await em.query(`TRUNCATE ${READ_MODEL_TABLES.join(', ')}`);
      await em.query(`DELETE FROM projection_checkpoints WHERE name = $1`, [this.name]);
    });
    this.logger.log(`projector ${this.name}: read models emptied, replaying from the first event`);
  }

  /** Waits to become the active instance, then follows the event store until stop(). */
  async start(): Promise<void> {
    this.stopped = false;
    await this.acquireLock();
    if (this.stopped) return;
    void this.follow();
  }

  /** Applies everything currently in the store, then returns (rebuilds, benchmarks, tests). */
  async runUntilCaughtUp(): Promise<number> {
    let from = await this.checkpoint();
    let total = 0;
    let next = this.store.readAll(from, this.batchSize);
    for (;;) {
      const events = await next;
      if (events.length === 0) return total;
      // Read the next batch while this one is written.
      next = this.store.readAll(events[events.length - 1].position, this.batchSize);
      next.catch(() => undefined);
      from = await this.applyBatch(events, from);
      total += events.length;
    }
  }

  whenCaughtUp(): Promise<void> {
    if (this.caughtUp) return Promise.resolve();
    return new Promise((resolve) => this.caughtUpWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.subscription?.stop();
    this.subscription = null;
    if (this.lockClient) {
      await this.lockClient.end().catch(() => undefined);
      this.lockClient = null;
    }
  }

  private async acquireLock(): Promise<void> {
    const options = this.dataSource.options as { url?: string };
    const client = new Client({ connectionString: options.url, application_name: `strata-projector-lock` });
    await client.connect();
    this.lockClient = client;
    let announced = false;
    while (!this.stopped) {
      const { rows } = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock($1) AS ok`, [PROJECTOR_LOCK_KEY]);
      if (rows[0].ok) return;
      if (!announced) this.logger.log(`projector ${this.name}: another instance is active, standing by`);
      announced = true;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }

  private async follow(): Promise<void> {
    while (!this.stopped) {
      let from = await this.checkpoint();
      this.logger.log(`projector ${this.name}: following events from ${from ?? 'the beginning'}`);
      this.subscription = this.store.subscribeToAll({
        from,
        batchSize: this.batchSize,
        onBatch: async (events) => {
          from = await this.applyBatch(events, from);
        },
        onCaughtUp: () => {
          this.caughtUp = true;
          this.caughtUpWaiters.splice(0).forEach((w) => w());
        },
      });
      try {
        await this.subscription.done;
      } catch (error) {
        if (this.stopped) return;
        this.logger.error(`projector ${this.name}: ${(error as Error).message}; resuming from the checkpoint in 1 s`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  private async applyBatch(events: RecordedEvent[], expectedCheckpoint: Checkpoint | null): Promise<Checkpoint> {
    const last = events[events.length - 1].position;
    await this.dataSource.transaction(async (em: EntityManager) => {
      const rows: { position: string }[] = await em.query(`SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE`, [this.name]);
      const current = rows[0]?.position ?? null;
      if (current !== expectedCheckpoint) {
        throw new ProjectorFencedError(`projector ${this.name}: checkpoint moved to ${current} while this instance expected ${expectedCheckpoint}`);
      }
      // Rows and checkpoint commit together, so a commit lost in a crash is simply replayed: the
      // projector does not need to wait for the WAL flush.
      await em.query(`SET LOCAL synchronous_commit = off`);
      const batch = new BatchedSqlExecutor();
      for (const event of events) {
        for (const projection of this.byType.get(event.type) ?? []) await projection.apply(event, batch);
      }
      await batch.flush(em);
      await em.query(
        `INSERT INTO projection_checkpoints (name, position, updated) VALUES ($1, $2, now())
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated = EXCLUDED.updated`,
        [this.name, last],
      );
      await em.query(`SELECT pg_notify($1, $2)`, [PROJECTED_CHANNEL, `${this.name} ${last}`]);
    });
    this.appliedEvents += events.length;
    return last;
  }
}
