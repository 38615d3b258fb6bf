import { Client, type ClientConfig } from 'pg';

const MIN_RECONNECT_DELAY_MS = 100;
const MAX_RECONNECT_DELAY_MS = 5000;

/**
 * One dedicated connection that LISTENs on a channel and turns notifications into a change counter that
 * subscriptions wait on. Notifications carry no payload and are coalesced: a subscription only needs to
 * know "something may have changed since I last read".
 *
 * The connection is re-established with backoff when it drops; while it is down, subscriptions fall back
 * on their periodic re-check, and every (re)connection counts as a change because notifications sent while
 * nobody listened are lost.
 */
export class PgNotificationListener {
  private client: Client | null = null;
  private changes = 0;
  private readonly waiters = new Set<() => void>();
  private started = false;
  private closed = false;
  private failures = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private connecting: Promise<void> | null = null;

  constructor(
    private readonly clientConfig: ClientConfig,
    private readonly channel: string,
  ) {
    if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`invalid notification channel "${channel}"`);
  }

  /** Connects on first use; later calls are no-ops. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.connecting = this.connect();
  }

  /** Counter that grows on every notification or reconnection; pass it back to waitForChange. */
  get generation(): number {
    return this.changes;
  }

  /**
   * Resolves when the generation moves past `seen`, after `timeoutMs`, or when `signal` aborts; whichever
   * comes first. Never rejects.
   */
  waitForChange(seen: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.changes !== seen || this.closed || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', finish);
        this.waiters.delete(finish);
        resolve();
      };
      const timer = setTimeout(finish, timeoutMs);
      signal?.addEventListener('abort', finish, { once: true });
      this.waiters.add(finish);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.wakeAll();
    await this.connecting?.catch(() => undefined);
    const client = this.client;
    this.client = null;
    if (client) await client.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    // keepAlive: an idle LISTEN connection whose peer vanished silently would otherwise never error out.
    const client = new Client({ ...this.clientConfig, application_name: 'strata-event-store-listen', keepAlive: true });
    let lost = false;
    const onLost = (): void => {
      if (lost) return;
      lost = true;
      this.connectionLost(client);
    };
    // An idle client that loses its server emits 'error' (and 'end'); without a listener that would crash.
    client.on('error', onLost);
    client.on('end', onLost);
    client.on('notification', (message) => {
      if (message.channel === this.channel) this.signalChange();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${this.channel}`);
    } catch {
      onLost();
      return;
    }
    if (lost) return;
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.failures = 0;
    this.signalChange();
  }

  private connectionLost(client: Client): void {
    if (this.client === client) this.client = null;
    if (this.closed) return; // our own close() ended it
    client.removeAllListeners('notification');
    void client.end().catch(() => undefined);
    // Whatever was notified while we were away is lost: let subscriptions re-read now.
    this.signalChange();
    const delay = Math.min(MAX_RECONNECT_DELAY_MS, MIN_RECONNECT_DELAY_MS * 2 ** this.failures);
    this.failures += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.closed) this.connecting = this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private signalChange(): void {
    this.changes += 1;
    this.wakeAll();
  }

  private wakeAll(): void {
    for (const wake of [...this.waiters]) wake();
  }
}
