/**
 * Jobs of the management plane (queue `management`): work that events ask for but that needs no host.
 * Job ids are deterministic (the async job id, or derived from the event's subject), so a dispatcher
 * that re-reads an event after a crash adds no second job.
 */
export const MANAGEMENT_QUEUE = 'management';

export interface ImportBackupOfferingJob {
  name: 'importBackupOffering';
  data: { offeringId: string; jobId: string };
}

export interface ReleaseNativeOfferingJob {
  name: 'releaseNativeOffering';
  data: { offeringId: string; nativeOfferingId: string };
}

export type ManagementJob = ImportBackupOfferingJob | ReleaseNativeOfferingJob;

export const managementJobId = {
  importBackupOffering: (jobId: string) => `import-${jobId}`,
  releaseNativeOffering: (offeringId: string) => `release-${offeringId}`,
};
