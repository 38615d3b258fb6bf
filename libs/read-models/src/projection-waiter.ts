import { Client } from 'pg';
import { Checkpoint, EventStore } from '@strata/event-store';
import { PROJECTED_CHANNEL } from './projector';

interface Waiter {
  position: Checkpoint;
  resolve: (reached: boolean) => void;
  timer: NodeJS.Timeout;
}

/**
 * Read-your-writes for the API: after appending, a command waits until the projector has applied its
 * events, so that a list right after a create shows the new object. Woken by the projector's NOTIFY,
 * with a slow poll in case a notification is missed.
 */
export class ProjectionWaiter {
  private client: Client | null = null;
  private latest: Checkpoint | null = null;
  private waiters: Waiter[] = [];
  private poll: NodeJS.Timeout | null = null;

  constructor(
    private readonly databaseUrl: string,
    private readonly store: Pick<EventStore, 'comparePositions'>,
    private readonly projectorName = 'read-models',
  ) {}

  async start(): Promise<void> {
    const client = new Client({ connectionString: this.databaseUrl, application_name: 'strata-projection-waiter' });
    client.on('notification', (msg) => {
      const [name, position] = (msg.payload ?? '').split(' ');
      if (name === this.projectorName && position) this.advance(position);
    });
    client.on('error', () => undefined);
    await client.connect();
    await client.query(`LISTEN ${PROJECTED_CHANNEL}`);
    this.client = client;
    await this.refresh();
    this.poll = setInterval(() => void this.refresh().catch(() => undefined), 1000);
  }

  async stop(): Promise<void> {
    if (this.poll) clearInterval(this.poll);
    this.waiters.splice(0).forEach((w) => {
      clearTimeout(w.timer);
      w.resolve(false);
    });
    await this.client?.end().catch(() => undefined);
    this.client = null;
  }

  /** Resolves true once the read models include `position`, false after the timeout. */
  waitFor(position: Checkpoint, timeoutMs = 5000): Promise<boolean> {
    if (this.reached(position)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        position,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  private reached(position: Checkpoint): boolean {
    return this.latest !== null && this.store.comparePositions(this.latest, position) >= 0;
  }

  private async refresh(): Promise<void> {
    if (!this.client) return;
    const { rows } = await this.client.query<{ position: string }>(`SELECT position FROM projection_checkpoints WHERE name = $1`, [this.projectorName]);
    if (rows[0]) this.advance(rows[0].position);
  }

  private advance(position: Checkpoint): void {
    if (this.latest === null || this.store.comparePositions(position, this.latest) > 0) this.latest = position;
    const ready = this.waiters.filter((w) => this.reached(w.position));
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) {
      clearTimeout(w.timer);
      w.resolve(true);
    }
  }
}
