/**
 * Whether a host is alive: the Redis hash `<queue prefix>:host-last-seen`, one field per host id, written by
 * the agent itself at every beat. Not through the agent-reports queue: that queue is worked one report at a
 * time, and behind a burst of slow reports a heartbeat could wait longer than the silence limit, so a live
 * host would be marked Disconnected. (The queued HostHeartbeat still registers the host and brings a
 * Disconnected one Up again.)
 */
export const hostLastSeenKey = (queuePrefix: string) => `${queuePrefix}:host-last-seen`;

/** A host is Disconnected after this many missed heartbeats. */
export const MISSED_HEARTBEATS_LIMIT = 3;

export interface HostLastSeen {
  /** When the agent last beat (its own clock, epoch ms). */
  atMs: number;
  /** How long the host may stay silent before it is Disconnected. */
  silenceLimitMs: number;
}

/** The hash field's value: "<last seen ms>:<silence limit ms>", so that the monitor needs nothing else. */
export function formatHostLastSeen(atMs: number, heartbeatSeconds: number): string {
  return `${atMs}:${heartbeatSeconds * 1000 * MISSED_HEARTBEATS_LIMIT}`;
}

/** null for a value this version does not understand (the monitor then forgets the field). */
export function parseHostLastSeen(value: string): HostLastSeen | null {
  const match = /^(\d+):(\d+)$/.exec(value);
  return match ? { atMs: Number(match[1]), silenceLimitMs: Number(match[2]) } : null;
}
