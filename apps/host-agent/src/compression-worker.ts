import { Job, Worker } from 'bullmq';
import { AgentConfig, Logger } from '@strata/config';
import { CompressionHostJob, hostCompressionQueueName } from '@strata/jobs';
import { CompressionExecutor } from './compression-executor';
import { stalledJobSettings } from './host-agent';

/**
 * Slots of the host's compression queue. Not a limit: the management plane's scheduler hands out only
 * attempts that fit backup.compression.max.concurrent.compressions.per.host and the zone's limit; this is
 * just large enough never to hold one back ("unlimited" settings stop here).
 */
export const COMPRESSION_WORKER_SLOTS = 64;

/** The host's compression queue (`host.<hostId>.compression`): thin, the executor does the work and reports. */
export function createCompressionWorker(config: AgentConfig, hostId: string, executor: CompressionExecutor, logger: Logger): Worker {
  const worker = new Worker(
    hostCompressionQueueName(hostId),
    async (job: Job) => {
      const j = { name: job.name, data: job.data } as CompressionHostJob;
      switch (j.name) {
        case 'startCompression':
          return executor.start(j.data);
        case 'finalizeCompression':
          return executor.finalize(j.data);
        case 'cancelCompression':
          return executor.cancel(j.data);
        case 'discardCompressionSideFiles':
          return executor.discard(j.data);
        default:
          throw new Error(`unknown compression job ${job.name}`);
      }
    },
    { connection: { url: config.redisUrl, maxRetriesPerRequest: null }, prefix: config.queuePrefix, concurrency: COMPRESSION_WORKER_SLOTS, ...stalledJobSettings(config.heartbeatSeconds) },
  );
  worker.on('error', (error) => logger.error(`compression worker: ${error.message}`));
  return worker;
}
