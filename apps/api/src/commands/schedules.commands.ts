import { asyncJobDecider, backupDeletionDecider, BackupScheduleSpec, backupScheduleDecider, invalid, notFound, SCHEDULE_INTERVAL_TYPES, ScheduleIntervalType, Streams } from '@strata/domain';
import { BackupScheduleView, VirtualMachineView } from '@strata/read-models';
import { CommandContext, CommandDefinition } from '../http/command-definition';
import { ApiServices, page, projected } from './api-services';

function scheduleResponse(s: BackupScheduleView, vmName: string | undefined) {
  return {
    id: s.id,
    virtualmachineid: s.vmId,
    ...(vmName && { virtualmachinename: vmName }),
    schedule: s.schedule,
    intervaltype: s.intervalType,
    timezone: s.timezone,
    maxbackups: s.maxBackups,
    quiescevm: s.quiesce,
    isolated: s.isolated,
  };
}

const fields = [
  { name: 'intervaltype', type: 'enum' as const, enum: SCHEDULE_INTERVAL_TYPES, description: 'HOURLY, DAILY, WEEKLY or MONTHLY' },
  { name: 'schedule', type: 'string' as const, maxLength: 16, description: 'HOURLY MM, DAILY MM:HH, WEEKLY MM:HH:DD (1-7, 1 = Sunday), MONTHLY MM:HH:DD (1-28)' },
  { name: 'timezone', type: 'string' as const, maxLength: 64, description: 'IANA time zone the schedule is read in, e.g. Europe/Berlin' },
  { name: 'maxbackups', type: 'integer' as const, min: 0, description: 'backups of this schedule kept; older ones are deleted after each scheduled backup (0 = keep all)' },
  { name: 'quiescevm', type: 'boolean' as const, description: 'freeze guest file systems while the backup starts' },
  { name: 'isolated', type: 'boolean' as const, description: 'every scheduled backup is a full one outside any chain' },
];

/** Backup schedules (CloudStack's four commands), run by the management plane as BullMQ job schedulers. */
export function scheduleCommands(s: ApiServices): CommandDefinition[] {
  const vmOf = async (vmId: string) => {
    const vm = await s.db.getRepository(VirtualMachineView).findOne({ where: { id: vmId } });
    if (!vm) throw notFound(`virtual machine ${vmId} does not exist`, 'virtualmachineid');
    return vm;
  };
  /** The live schedule named by `id`, or the VM's only one (`virtualmachineid`). */
  const target = async (params: Record<string, unknown>): Promise<BackupScheduleView> => {
    const qb = s.db.getRepository(BackupScheduleView).createQueryBuilder('s').where('s.removed IS NULL');
    if (params.id) qb.andWhere('s.id = :id', { id: params.id });
    else if (params.virtualmachineid) qb.andWhere('s.vm_id = :vmId', { vmId: params.virtualmachineid });
    else throw invalid('give id or virtualmachineid', 'id');
    const found = await qb.getMany();
    if (found.length === 0) throw notFound(params.id ? `backup schedule ${params.id} does not exist` : `virtual machine ${params.virtualmachineid} has no backup schedule`, params.id ? 'id' : 'virtualmachineid');
    if (found.length > 1) throw invalid(`virtual machine ${params.virtualmachineid} has ${found.length} schedules; name one with id`, 'id');
    return found[0];
  };
  const answer = async (id: string) => {
    const row = await s.db.getRepository(BackupScheduleView).findOneOrFail({ where: { id } });
    const vm = await s.db.getRepository(VirtualMachineView).findOne({ where: { id: row.vmId } });
    return { kind: 'object' as const, name: 'backupschedule', object: scheduleResponse(row, vm?.name) };
  };

  return [
    {
      name: 'createBackupSchedule',
      description: 'Creates a backup schedule of a virtual machine (one per interval type; an existing one of the same type is updated).',
      isAsync: false,
      adminOnly: false,
      responseObject: 'backupschedule',
      params: [
        { name: 'virtualmachineid', type: 'uuid', required: true, description: 'the virtual machine' },
        ...fields.map((f) => ({ ...f, required: ['intervaltype', 'schedule', 'timezone'].includes(f.name) })),
      ],
      async handle(params, ctx: CommandContext) {
        const vm = await vmOf(params.virtualmachineid as string);
        if (!vm.backupOfferingId) throw invalid(`virtual machine ${vm.name} is not assigned to a backup offering`, 'virtualmachineid');
        const scheduleId = s.newId();
        const result = await s.handler.handle(
          Streams.vmSchedules(vm.id),
          backupScheduleDecider,
          {
            type: 'CreateSchedule',
            data: {
              scheduleId,
              vmId: vm.id,
              userId: ctx.user.id,
              intervalType: params.intervaltype as ScheduleIntervalType,
              schedule: params.schedule as string,
              timezone: params.timezone as string,
              maxBackups: (params.maxbackups as number | undefined) ?? 0,
              quiesce: (params.quiescevm as boolean | undefined) ?? false,
              isolated: (params.isolated as boolean | undefined) ?? false,
              at: ctx.now,
            },
          },
          { metadata: { userId: ctx.user.id } },
        );
        await projected(s, result);
        const id = (result.events[0]?.data as { scheduleId: string } | undefined)?.scheduleId;
        if (id) return answer(id);
        // The same schedule again: answer the one there.
        return answer((await target({ virtualmachineid: vm.id, intervaltype: params.intervaltype }).catch(() => null))?.id ?? scheduleId);
      },
    },
    {
      name: 'updateBackupSchedule',
      description: 'Changes a backup schedule.',
      isAsync: false,
      adminOnly: false,
      responseObject: 'backupschedule',
      params: [{ name: 'id', type: 'uuid', description: 'the schedule' }, { name: 'virtualmachineid', type: 'uuid', description: "the virtual machine (when it has one schedule)" }, ...fields],
      async handle(params, ctx) {
        const row = await target(params);
        const changes: Partial<BackupScheduleSpec> = {
          intervalType: params.intervaltype as ScheduleIntervalType | undefined,
          schedule: params.schedule as string | undefined,
          timezone: params.timezone as string | undefined,
          maxBackups: params.maxbackups as number | undefined,
          quiesce: params.quiescevm as boolean | undefined,
          isolated: params.isolated as boolean | undefined,
        };
        const result = await s.handler.handle(Streams.vmSchedules(row.vmId), backupScheduleDecider, { type: 'UpdateSchedule', data: { scheduleId: row.id, changes, at: ctx.now } }, { metadata: { userId: ctx.user.id } });
        await projected(s, result);
        return answer(row.id);
      },
    },
    {
      name: 'listBackupSchedule',
      description: 'Lists backup schedules.',
      isAsync: false,
      adminOnly: false,
      responseObject: 'backupschedule',
      params: [
        { name: 'id', type: 'uuid', description: 'the schedule' },
        { name: 'virtualmachineid', type: 'uuid', description: 'the virtual machine' },
      ],
      async handle(params) {
        const qb = s.db.getRepository(BackupScheduleView).createQueryBuilder('s').where('s.removed IS NULL');
        if (params.id) qb.andWhere('s.id = :id', { id: params.id });
        if (params.virtualmachineid) qb.andWhere('s.vm_id = :vmId', { vmId: params.virtualmachineid });
        const { items, count } = await page(qb, params, 'interval_type');
        const vmIds = [...new Set(items.map((x) => x.vmId))];
        const vms = vmIds.length ? await s.db.getRepository(VirtualMachineView).createQueryBuilder('v').where('v.id IN (:...ids)', { ids: vmIds }).getMany() : [];
        return { kind: 'list', name: 'backupschedule', items: items.map((x) => scheduleResponse(x, vms.find((v) => v.id === x.vmId)?.name)), count };
      },
    },
    {
      name: 'deleteBackupSchedule',
      description: 'Deletes a backup schedule (its backups are kept).',
      isAsync: false,
      adminOnly: false,
      responseObject: 'success',
      params: [
        { name: 'id', type: 'uuid', description: 'the schedule' },
        { name: 'virtualmachineid', type: 'uuid', description: 'the virtual machine: deletes all its schedules' },
      ],
      async handle(params, ctx) {
        const rows = params.id ? [await target(params)] : await s.db.getRepository(BackupScheduleView).createQueryBuilder('s').where('s.removed IS NULL').andWhere('s.vm_id = :vmId', { vmId: params.virtualmachineid }).getMany();
        if (!params.id && !params.virtualmachineid) throw invalid('give id or virtualmachineid', 'id');
        if (rows.length === 0) throw notFound(`virtual machine ${params.virtualmachineid} has no backup schedule`, 'virtualmachineid');
        for (const row of rows) {
          const result = await s.handler.handle(Streams.vmSchedules(row.vmId), backupScheduleDecider, { type: 'DeleteSchedule', data: { scheduleId: row.id, at: ctx.now } }, { metadata: { userId: ctx.user.id } });
          await projected(s, result);
        }
        return { kind: 'success', displaytext: `deleted ${rows.length} backup schedule(s)` };
      },
    },
    {
      name: 'deleteBackup',
      description:
        'Deletes a backup. The newest backup of a chain is removed with its checkpoint; a backup others depend on is merged into them (its data copied into each, then its files removed). Until that is possible (a restore, quick-restore consolidation, compression or backup reads the files) it is Removed and finished later. forced: remove it even when its files are gone.',
      isAsync: true,
      adminOnly: false,
      responseObject: 'success',
      params: [
        { name: 'id', type: 'uuid', required: true, description: 'the backup' },
        { name: 'forced', type: 'boolean', default: false, description: 'remove the backup even when its files are missing from the repository' },
      ],
      async handle(params, ctx) {
        const backupId = params.id as string;
        const row = await s.db.query(`SELECT vm_id FROM backups WHERE id = $1`, [backupId]);
        if (!row[0]) throw notFound(`backup ${backupId} does not exist`, 'id');
        const vmId: string = row[0].vm_id;
        const jobId = s.newId();
        const command = { type: 'DeleteBackup' as const, data: { backupId, jobId, forced: params.forced as boolean, reason: `deleteBackup by ${ctx.user.name}${params.forced ? ' (forced)' : ''}`, at: ctx.now } };
        // Refused (unknown, still running) before a job exists, so the caller gets 431/536 directly.
        const { state } = await s.handler.load(Streams.vmBackups(vmId), backupDeletionDecider);
        backupDeletionDecider.decide(command, state);
        await s.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, { type: 'CreateAsyncJob', data: { jobId, command: 'deleteBackup', userId: ctx.user.id, instanceType: 'Backup', instanceId: backupId, at: ctx.now } });
        let result;
        try {
          result = await s.handler.handle(Streams.vmBackups(vmId), backupDeletionDecider, command, { metadata: { userId: ctx.user.id } });
        } catch (error) {
          await s.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, { type: 'FailAsyncJob', data: { jobId, errorCode: 536, errorText: (error as Error).message, at: ctx.now } });
          throw error;
        }
        const started = result.events.some((e) => e.type === 'BackupRemovalStarted' && (e.data as { backupId: string }).backupId === backupId);
        const gone = result.events.some((e) => e.type === 'BackupExpunged' && (e.data as { backupId: string }).backupId === backupId);
        if (!started) {
          // Nothing to wait for here: already gone, already being removed, or Removed until its obstacles end.
          const requested = result.events.find((e) => e.type === 'BackupDeletionRequested')?.data as { waitingFor: string[] } | undefined;
          const text = gone ? `backup ${backupId} was removed` : requested ? `backup ${backupId} is Removed; its files are merged or removed when nothing reads them (waiting for: ${requested.waitingFor.join('; ')})` : `backup ${backupId} is already being removed`;
          await s.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, { type: 'SucceedAsyncJob', data: { jobId, resultType: 'success', result: { success: true, displaytext: text }, at: ctx.now } });
        }
        await projected(s, result);
        return { kind: 'async', jobid: jobId };
      },
    },
  ];
}
