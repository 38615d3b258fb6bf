import { CompressionJobType } from './backup-compression.events';

/**
 * Which waiting compression jobs start now, and where. Pure: the scheduler hands in what the read models
 * say (every Running job, every host) and the limits in force, and starts exactly what this returns.
 *
 * - Starting jobs: at most `perHost(host)` running on one host (a host's own limit, or the global one) and
 *   `perZone(zone)` running in one zone (below 1: unlimited). A job runs on its preferred host (the one that took the backup) when that host is Up and
 *   has room, else on the Up host of its zone with the fewest running Starting jobs (any host of a zone
 *   reaches the zone's repositories).
 * - Finalizing jobs ignore both limits; they go to their preferred host (the one that wrote the side
 *   files) when it is Up, else to any Up host of the zone.
 * - Oldest first (by scheduled time, then id), and a job that cannot start does not hold up later ones.
 */
export interface WaitingCompressionJob {
  jobId: string;
  type: CompressionJobType;
  zoneId: string;
  preferredHostId: string | null;
  scheduledAt: Date;
}

export interface RunningCompressionJob {
  jobId: string;
  type: CompressionJobType;
  zoneId: string;
  hostId: string;
}

export interface CompressionHost {
  hostId: string;
  zoneId: string;
  up: boolean;
}

export interface CompressionLimits {
  perHost: (hostId: string) => number;
  perZone: (zoneId: string) => number;
}

export interface PlannedCompressionStart {
  jobId: string;
  hostId: string;
}

const limited = (limit: number) => limit >= 1;

export function planCompressionStarts(
  waiting: readonly WaitingCompressionJob[],
  running: readonly RunningCompressionJob[],
  hosts: readonly CompressionHost[],
  limits: CompressionLimits,
  now: Date,
): PlannedCompressionStart[] {
  const perHost = new Map<string, number>();
  const perZone = new Map<string, number>();
  const anyOnHost = new Map<string, number>();
  for (const r of running) {
    anyOnHost.set(r.hostId, (anyOnHost.get(r.hostId) ?? 0) + 1);
    if (r.type !== 'Starting') continue;
    perHost.set(r.hostId, (perHost.get(r.hostId) ?? 0) + 1);
    perZone.set(r.zoneId, (perZone.get(r.zoneId) ?? 0) + 1);
  }
  const upIn = (zoneId: string) =>
    hosts
      .filter((h) => h.up && h.zoneId === zoneId)
      .map((h) => h.hostId)
      .sort();
  const due = waiting.filter((j) => j.scheduledAt.getTime() <= now.getTime()).sort((a, b) => a.scheduledAt.getTime() - b.scheduledAt.getTime() || a.jobId.localeCompare(b.jobId));
  const planned: PlannedCompressionStart[] = [];
  for (const job of due) {
    const candidates = upIn(job.zoneId);
    if (candidates.length === 0) continue;
    let hostId: string | undefined;
    if (job.type === 'Finalizing') {
      hostId = job.preferredHostId && candidates.includes(job.preferredHostId) ? job.preferredHostId : [...candidates].sort((a, b) => (anyOnHost.get(a) ?? 0) - (anyOnHost.get(b) ?? 0))[0];
    } else {
      const zoneLimit = limits.perZone(job.zoneId);
      if (limited(zoneLimit) && (perZone.get(job.zoneId) ?? 0) >= zoneLimit) continue;
      const hasRoom = (h: string) => {
        const hostLimit = limits.perHost(h);
        return !limited(hostLimit) || (perHost.get(h) ?? 0) < hostLimit;
      };
      if (job.preferredHostId && candidates.includes(job.preferredHostId) && hasRoom(job.preferredHostId)) hostId = job.preferredHostId;
      else hostId = candidates.filter(hasRoom).sort((a, b) => (perHost.get(a) ?? 0) - (perHost.get(b) ?? 0))[0];
      if (!hostId) continue;
      perHost.set(hostId, (perHost.get(hostId) ?? 0) + 1);
      perZone.set(job.zoneId, (perZone.get(job.zoneId) ?? 0) + 1);
    }
    anyOnHost.set(hostId, (anyOnHost.get(hostId) ?? 0) + 1);
    planned.push({ jobId: job.jobId, hostId });
  }
  return planned;
}
