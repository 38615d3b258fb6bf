/** Stream names of every aggregate: `<category>-<id>`, no "-" in the category (EventStoreDB splits there). */
export const Streams = {
  zone: (zoneId: string) => `zone-${zoneId}`,
  nativeOffering: (offeringId: string) => `nativeOffering-${offeringId}`,
  backupOffering: (offeringId: string) => `backupOffering-${offeringId}`,
  settings: (zoneId: string | null) => `settings-${zoneId ?? 'global'}`,
  hostSettings: (hostId: string) => `hostSettings-${hostId}`,
  apiUser: (userId: string) => `apiUser-${userId}`,
  asyncJob: (jobId: string) => `asyncJob-${jobId}`,
  vmBackups: (vmId: string) => `vmBackups-${vmId}`,
  vm: (vmId: string) => `vm-${vmId}`,
  host: (hostId: string) => `host-${hostId}`,
  vmSchedules: (vmId: string) => `vmSchedules-${vmId}`,
} as const;
