/** The `backupoffering` object of API.md, shared by the API's lists and the import job's result. */
export interface BackupOfferingResponseSource {
  id: string;
  name: string;
  description: string;
  externalId: string;
  allowUserDrivenBackups: boolean;
  zoneId: string;
  zoneName: string | null;
  repositoryId: string | null;
  created: Date;
}

export const BACKUP_PROVIDER = 'strata';

export function formatCloudStackDate(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, '+0000');
}

export function backupOfferingResponse(o: BackupOfferingResponseSource): Record<string, unknown> {
  return {
    id: o.id,
    name: o.name,
    description: o.description,
    provider: BACKUP_PROVIDER,
    externalid: o.externalId,
    allowuserdrivenbackups: o.allowUserDrivenBackups,
    zoneid: o.zoneId,
    ...(o.zoneName !== null && { zonename: o.zoneName }),
    created: formatCloudStackDate(o.created),
    backupofferingdetails: o.repositoryId ? { repositoryid: o.repositoryId } : {},
  };
}
