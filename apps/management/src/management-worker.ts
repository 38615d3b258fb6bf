import { Job, Worker } from 'bullmq';
import { ImportBackupOfferingUseCase, ReleaseNativeOfferingUseCase } from '@strata/application';
import { ManagementJob, MANAGEMENT_QUEUE } from '@strata/jobs';
import { Logger } from './dispatcher';

export interface ManagementUseCases {
  importBackupOffering: ImportBackupOfferingUseCase;
  releaseNativeOffering: ReleaseNativeOfferingUseCase;
}

/** Thin: takes the ids from the job and runs the use case; the use cases are idempotent. */
export function createManagementWorker(
  useCases: ManagementUseCases,
  connection: { url: string },
  prefix: string,
  logger: Logger,
  clock: () => Date = () => new Date(),
): Worker {
  const worker = new Worker(
    MANAGEMENT_QUEUE,
    async (job: Job) => {
      const j = { name: job.name, data: job.data } as ManagementJob;
      switch (j.name) {
        case 'importBackupOffering':
          return useCases.importBackupOffering.run(j.data.offeringId, j.data.jobId, clock());
        case 'releaseNativeOffering':
          return useCases.releaseNativeOffering.run(j.data.offeringId, j.data.nativeOfferingId);
        default:
          throw new Error(`unknown management job ${job.name}`);
      }
    },
    { connection: { url: connection.url, maxRetriesPerRequest: null }, prefix, concurrency: 4, autorun: true },
  );
  worker.on('failed', (job, error) => logger.error(`management job ${job?.name} ${job?.id} failed (attempt ${job?.attemptsMade}): ${error.message}`));
  worker.on('error', (error) => logger.error(`management worker: ${error.message}`));
  return worker;
}
