import { formatCloudStackDate } from '@strata/application';
import { BackupCompressionJobView } from '@strata/read-models';
import { CommandDefinition, ParamSpec } from '../http/command-definition';
import { ApiServices, page } from './api-services';

/** KBOSS's listBackupServiceJobs names the compression job types differently. */
const SERVICE_TYPE = { Starting: 'StartCompression', Finalizing: 'FinalizeCompression' } as const;
const FROM_SERVICE_TYPE: Record<string, 'Starting' | 'Finalizing' | null> = { StartCompression: 'Starting', FinalizeCompression: 'Finalizing', BackupValidation: null };

function jobResponse(j: BackupCompressionJobView, type: string) {
  return {
    id: j.id,
    backupid: j.backupId,
    virtualmachineid: j.vmId,
    ...(j.hostId && { hostid: j.hostId }),
    zoneid: j.zoneId,
    attempts: j.attempts,
    type,
    ...(j.startDate && { startdate: formatCloudStackDate(j.startDate) }),
    scheduleddate: formatCloudStackDate(j.scheduledDate),
    ...(j.removed && { removed: formatCloudStackDate(j.removed) }),
    status: j.status,
    ...(j.lastError && { lasterror: j.lastError }),
    ...(j.status === 'Running' && j.deadline && { deadline: formatCloudStackDate(j.deadline) }),
    ...(j.cancelRequested && { cancelrequested: true }),
  };
}

const commonParams: ParamSpec[] = [
  { name: 'id', type: 'uuid', description: 'the id of the job (found whether it ended or not)' },
  { name: 'backupid', type: 'uuid', description: 'jobs of this backup (ended ones included)' },
  { name: 'hostid', type: 'uuid', description: 'jobs executing on this host (implies executing=true)' },
  { name: 'zoneid', type: 'uuid', description: 'jobs of this zone' },
  { name: 'executing', type: 'boolean', description: 'true: jobs running now; false: jobs not running' },
  { name: 'scheduled', type: 'boolean', description: 'true: jobs waiting to run (for their date, a retry or a free slot); false: the others' },
  { name: 'showremoved', type: 'boolean', default: false, description: 'strata: include jobs that ended (done, failed, cancelled); they carry `removed`' },
];

async function listJobs(s: ApiServices, params: Record<string, unknown>, type: 'Starting' | 'Finalizing' | null | undefined) {
  const qb = s.db.getRepository(BackupCompressionJobView).createQueryBuilder('j').where('1 = 1');
  if (type === null) qb.andWhere('1 = 0'); // BackupValidation: no validation jobs yet
  if (type) qb.andWhere('j.type = :type', { type });
  if (params.id) qb.andWhere('j.id = :id', { id: params.id });
  if (params.backupid) qb.andWhere('j.backup_id = :backupId', { backupId: params.backupid });
  if (params.zoneid) qb.andWhere('j.zone_id = :zoneId', { zoneId: params.zoneid });
  if (params.hostid) qb.andWhere(`j.host_id = :hostId AND j.status = 'Running'`, { hostId: params.hostid });
  if (params.executing !== undefined) qb.andWhere(params.executing ? `j.status = 'Running'` : `j.status <> 'Running'`);
  if (params.scheduled !== undefined) qb.andWhere(params.scheduled ? `j.status = 'Scheduled'` : `j.status <> 'Scheduled'`);
  if (!params.showremoved && !params.id && !params.backupid) qb.andWhere('j.removed IS NULL');
  return page(qb, params, 'status');
}

export function compressionCommands(s: ApiServices): CommandDefinition[] {
  return [
    {
      name: 'listBackupCompressionJobs',
      description: 'Lists backup compression jobs (Starting: compress into side files; Finalizing: swap them in), with attempts, dates, status and last error.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'backupcompressionjob',
      params: [...commonParams, { name: 'type', type: 'enum', enum: ['Starting', 'Finalizing'], description: 'Starting or Finalizing' }],
      async handle(params) {
        const { items, count } = await listJobs(s, params, params.type as 'Starting' | 'Finalizing' | undefined);
        return { kind: 'list', name: 'backupcompressionjob', items: items.map((j) => jobResponse(j, j.type)), count };
      },
    },
    {
      name: 'listBackupServiceJobs',
      description: "KBOSS's name for the backup service's jobs: compression jobs as StartCompression and FinalizeCompression (no BackupValidation jobs yet).",
      isAsync: false,
      adminOnly: true,
      responseObject: 'backupservicejob',
      params: [...commonParams, { name: 'type', type: 'enum', enum: ['StartCompression', 'FinalizeCompression', 'BackupValidation'], description: 'StartCompression, FinalizeCompression or BackupValidation' }],
      async handle(params) {
        const type = params.type === undefined ? undefined : FROM_SERVICE_TYPE[params.type as string];
        const { items, count } = await listJobs(s, params, type);
        return { kind: 'list', name: 'backupservicejob', items: items.map((j) => jobResponse(j, SERVICE_TYPE[j.type as 'Starting' | 'Finalizing'])), count };
      },
    },
  ];
}
