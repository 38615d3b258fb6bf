import { Subscription } from './event-store.port';

/** A store's running subscriptions, so that closing the store stops them all (each adapter needs this). */
export class OpenSubscriptions {
  private readonly open = new Set<Subscription>();

  /** Keeps `subscription` until it stops, however it stops. */
  track<S extends Subscription>(subscription: S): S {
    this.open.add(subscription);
    void subscription.done.catch(() => undefined).finally(() => this.open.delete(subscription));
    return subscription;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.open].map((s) => s.stop()));
  }
}
