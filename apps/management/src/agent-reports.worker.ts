import { Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { DataSource } from 'typeorm';
import { AgentReportsUseCase, BackupOutcomesUseCase, BackupRemovalUseCase, CompressionUseCase, hostIdFor, RestoreOutcomesUseCase, UnknownZoneError, ZoneDirectory } from '@strata/application';
import { DomainError } from '@strata/domain';
import { AgentReport, AGENT_REPORTS_QUEUE, hostLastSeenKey, parseHostLastSeen } from '@strata/jobs';
import { HostView, ZoneView } from '@strata/read-models';
import { IsNull } from 'typeorm';
import { Logger } from './dispatcher';

export function readModelZoneDirectory(db: DataSource): ZoneDirectory {
  return {
    async zoneIdByName(name) {
      return (await db.getRepository(ZoneView).findOne({ where: { name, removed: IsNull() } }))?.id ?? null;
    },
    async hostZone(hostId) {
      return (await db.getRepository(HostView).findOne({ where: { id: hostId } }))?.zoneId ?? null;
    },
  };
}

/**
 * Reports from the agents become events. Last-seen times live in Redis (not in events: heartbeats are
 * not decisions), written by the agents themselves (see host-liveness.ts), so any management instance can
 * tell that a host went silent, however far behind this queue is.
 */
export function createAgentReportsWorker(useCase: AgentReportsUseCase, backups: BackupOutcomesUseCase, restores: RestoreOutcomesUseCase, redisUrl: string, prefix: string, logger: Logger, compression: CompressionUseCase, removals: BackupRemovalUseCase | null = null): { worker: Worker; monitor: NodeJS.Timeout; redis: Redis } {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const lastSeenKey = hostLastSeenKey(prefix);
  const worker = new Worker(
    AGENT_REPORTS_QUEUE,
    async (job: Job) => {
      const report = job.data as AgentReport;
      switch (report.type) {
        case 'HostHeartbeat':
          await useCase.heartbeat(report);
          return;
        case 'DomainsReported':
          return useCase.domains(report);
        case 'BackupStarted':
          return backups.started(report.vmId, report.backupId, hostIdFor(report.hostName), new Date(report.at));
        case 'BackupProgressed':
          return backups.progressed(report);
        case 'BackupSucceeded':
          return backups.succeeded(report);
        case 'BackupFailed':
          return backups.failed(report);
        case 'RestoreProgressed':
          return restores.restoreProgressed(report);
        case 'RestoreSucceeded':
          return restores.restoreSucceeded(report);
        case 'RestoreFailed':
          return restores.restoreFailed(report);
        case 'ConsolidationProgressed':
          return restores.consolidationProgressed(report);
        case 'ConsolidationSucceeded':
          return restores.consolidationSucceeded(report);
        case 'ConsolidationFailed':
          return restores.consolidationFailed(report);
        case 'CompressionSucceeded':
          return compression.succeeded(report);
        case 'CompressionFailed':
          return compression.failed(report);
        case 'CompressionSideFilesDiscarded':
          return compression.sideFilesDiscarded(report);
        case 'BackupRemovalSucceeded':
          if (!removals) throw new Error('this management plane does not handle backup removals');
          return removals.succeeded(report);
        case 'BackupRemovalFailed':
          if (!removals) throw new Error('this management plane does not handle backup removals');
          return removals.failed(report);
      }
    },
    { connection: { url: redisUrl, maxRetriesPerRequest: null }, prefix, concurrency: 1 },
  );
  worker.on('failed', (job, error) => {
    if (error instanceof UnknownZoneError) logger.error(`agent report: ${error.message}`);
    else logger.error(`agent report ${job?.id} failed: ${error.message}`);
  });
  const monitor = setInterval(() => {
    void (async () => {
      const seen = await redis.hgetall(lastSeenKey);
      const now = Date.now();
      for (const [hostId, value] of Object.entries(seen)) {
        const lastSeen = parseHostLastSeen(value);
        if (lastSeen && now - lastSeen.atMs <= lastSeen.silenceLimitMs) continue;
        const silentMs = lastSeen ? now - lastSeen.atMs : 0;
        try {
          if (lastSeen) await useCase.disconnect(hostId, silentMs);
          logger.log(lastSeen ? `host ${hostId} silent for ${Math.round(silentMs / 1000)} s: Disconnected` : `host ${hostId}: unreadable last-seen value ${JSON.stringify(value)} forgotten`);
        } catch (error) {
          // A host that beat but never registered (its zone does not exist, say) has nothing to disconnect.
          if (!(error instanceof DomainError && error.kind === 'not_found')) throw error;
          logger.log(`host ${hostId} silent for ${Math.round(silentMs / 1000)} s; it never registered: ${(error as Error).message}`);
        }
        // Only the value just judged: a beat written meanwhile stays.
        await redis.eval("if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0", 1, lastSeenKey, hostId, value);
      }
    })().catch((error: Error) => logger.error(`host monitor: ${error.message}`));
  }, 1_000);
  return { worker, monitor, redis };
}
