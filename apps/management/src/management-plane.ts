import { Queue, Worker } from 'bullmq';
import { ImportBackupOfferingUseCase, ReleaseNativeOfferingUseCase, RepositorySpace } from '@strata/application';
import { createLogger, StrataConfig } from '@strata/config';
import { EventStore } from '@strata/event-store';
import { MANAGEMENT_QUEUE } from '@strata/jobs';
import { BackupRepositoryView, Projector, READ_MODEL_PROJECTIONS } from '@strata/read-models';
import { DataSource } from 'typeorm';
import { CommandHandler, SecretBox } from '@strata/application';
import { Dispatcher } from './dispatcher';
import { CompressionScheduler, readModelCompressionPolicy } from './compression-scheduler';
import { HostSecrets } from './host-secrets';
import { Lifecycle } from './lifecycle';
import { BackupRemovalUseCase } from '@strata/application';
import { createManagementWorker } from './management-worker';
import { createAgentReportsWorker, readModelZoneDirectory } from './agent-reports.worker';
import { AgentReportsUseCase, BackupOutcomesUseCase, CompressionUseCase, RestoreOutcomesUseCase } from '@strata/application';

export interface ManagementDeps {
  config: StrataConfig;
  store: EventStore;
  db: DataSource;
  handler: CommandHandler;
  /** The master key: host jobs carry repository credentials re-encrypted for the hosts. */
  secrets: SecretBox;
}

export interface Stoppable {
  stop(): Promise<void>;
}

export function createProjector(deps: Pick<ManagementDeps, 'config' | 'store' | 'db'>): Projector {
  return new Projector(deps.store, deps.db, READ_MODEL_PROJECTIONS, { logger: createLogger('projector', deps.config.logLevel) });
}

/** Free space from the read models; a repository without a known capacity counts as unknown. */
export function readModelRepositorySpace(db: DataSource): RepositorySpace {
  return {
    async freeBytesByRepository(zoneId: string) {
      const repos = await db.getRepository(BackupRepositoryView).find({ where: { zoneId } });
      return new Map(repos.filter((r) => !r.removed).map((r) => [r.id, r.capacityBytes === null ? null : r.capacityBytes - r.usedBytes]));
    },
  };
}

/** The dispatcher and the management worker: events become jobs, jobs become events. */
export async function startDispatcherAndWorkers(deps: ManagementDeps): Promise<Stoppable> {
  const logger = createLogger('dispatcher', deps.config.logLevel);
  const connection = { url: deps.config.redisUrl, maxRetriesPerRequest: null };
  const queue = new Queue(MANAGEMENT_QUEUE, { connection, prefix: deps.config.queuePrefix });
  const dispatcher = new Dispatcher(deps.store, deps.db, queue, logger, new HostSecrets(deps.secrets));
  const worker: Worker = createManagementWorker(
    {
      importBackupOffering: new ImportBackupOfferingUseCase(deps.handler, readModelRepositorySpace(deps.db), createLogger('management', deps.config.logLevel)),
      releaseNativeOffering: new ReleaseNativeOfferingUseCase(deps.handler),
    },
    { url: deps.config.redisUrl },
    deps.config.queuePrefix,
    createLogger('management', deps.config.logLevel),
  );
  const compression = new CompressionUseCase(deps.handler, readModelCompressionPolicy(deps.db));
  const compressionScheduler = new CompressionScheduler({
    store: deps.store,
    db: deps.db,
    databaseUrl: deps.config.databaseUrl,
    redisUrl: deps.config.redisUrl,
    queuePrefix: deps.config.queuePrefix,
    compression,
    logger: createLogger('compression', deps.config.logLevel),
  });
  const reports = createAgentReportsWorker(
    new AgentReportsUseCase(deps.handler, readModelZoneDirectory(deps.db)),
    new BackupOutcomesUseCase(deps.handler),
    new RestoreOutcomesUseCase(deps.handler),
    deps.config.redisUrl,
    deps.config.queuePrefix,
    createLogger('agent-reports', deps.config.logLevel),
    compression,
    new BackupRemovalUseCase(deps.handler),
  );
  const lifecycle = new Lifecycle({ store: deps.store, db: deps.db, handler: deps.handler, redisUrl: deps.config.redisUrl, queuePrefix: deps.config.queuePrefix, logger: createLogger('lifecycle', deps.config.logLevel) });
  dispatcher.lifecycle = lifecycle;
  await dispatcher.start();
  await compressionScheduler.start();
  return {
    async stop() {
      await compressionScheduler.stop();
      clearInterval(reports.monitor);
      await reports.worker.close();
      reports.redis.disconnect();
      await dispatcher.stop();
      await lifecycle.stop();
      // Graceful: lets the running job finish (use cases are short), then closes connections.
      await worker.close();
      await queue.close();
    },
  };
}
