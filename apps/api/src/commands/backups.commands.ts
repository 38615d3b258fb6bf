import { asyncJobDecider, backupChainDecider, conflict, invalid, notFound, Streams } from '@strata/domain';
import { formatCloudStackDate } from '@strata/application';
import { BackupOfferingView, BackupView, effectiveSetting, HostView, NativeOfferingView, VirtualMachineView, ZoneView } from '@strata/read-models';
import { CommandDefinition } from '../http/command-definition';
import { ApiServices, page, projected } from './api-services';

function backupResponse(b: BackupView, names: { vm?: string; offering?: string; zone?: string }) {
  return {
    id: b.id,
    ...(b.name && { name: b.name }),
    ...(b.description && { description: b.description }),
    virtualmachineid: b.vmId,
    ...(names.vm && { virtualmachinename: names.vm }),
    type: b.type,
    intervaltype: b.intervalType,
    created: formatCloudStackDate(b.created),
    size: b.size,
    virtualsize: b.virtualSize,
    uncompressedsize: b.uncompressedSize,
    status: b.status,
    compressionstatus: b.compressionStatus,
    validationstatus: b.validationStatus,
    volumes: b.volumes.map((v) => ({ id: v.volumeId, device: v.target, path: v.path, size: v.virtualSizeBytes, ...(v.storedBytes !== undefined && { storedsize: v.storedBytes }) })),
    backupofferingid: b.offeringId,
    ...(names.offering && { backupofferingname: names.offering }),
    ...(b.zoneId && { zoneid: b.zoneId }),
    ...(names.zone && { zone: names.zone }),
    hostid: b.hostId,
    isolated: b.isolated,
    quiesced: b.quiesced,
    chainid: b.chainId,
    ...(b.parentId && { parentid: b.parentId }),
    chainposition: b.chainPosition,
    ...(b.fromCheckpoint && { fromcheckpointid: b.fromCheckpoint }),
    tocheckpointid: b.toCheckpoint,
    repositoryid: b.repositoryId,
    ...(b.fullReason && { fullreason: b.fullReason }),
    ...(b.failure && { failure: b.failure }),
  };
}

export function backupCommands(s: ApiServices): CommandDefinition[] {
  return [
    {
      name: 'createBackup',
      description: 'Takes a backup of a virtual machine: incremental from the last one when its chain allows, else full (fullreason says why).',
      isAsync: true,
      adminOnly: false,
      responseObject: 'backup',
      params: [
        { name: 'virtualmachineid', type: 'uuid', required: true, description: 'the virtual machine' },
        { name: 'name', type: 'string', maxLength: 255, description: 'a name for the backup' },
        { name: 'description', type: 'string', maxLength: 4096, description: 'a description' },
        { name: 'quiescevm', type: 'boolean', default: false, description: 'freeze guest file systems through the guest agent while the backup starts' },
        { name: 'isolated', type: 'boolean', default: false, description: 'a full backup outside any chain' },
      ],
      async handle(params, ctx) {
        const vmId = params.virtualmachineid as string;
        const vm = await s.db.getRepository(VirtualMachineView).findOne({ where: { id: vmId } });
        if (!vm) throw notFound(`virtual machine ${vmId} does not exist`, 'virtualmachineid');
        if (!vm.backupOfferingId) throw invalid(`virtual machine ${vm.name} is not assigned to a backup offering; use assignVirtualMachineToBackupOffering`, 'virtualmachineid');
        const offering = await s.db.getRepository(BackupOfferingView).findOneOrFail({ where: { id: vm.backupOfferingId } });
        const native = await s.db.getRepository(NativeOfferingView).findOneOrFail({ where: { id: offering.externalId } });
        if (!offering.repositoryId) throw invalid(`backup offering ${offering.name} has no repository`, 'virtualmachineid');
        const host = await s.db.getRepository(HostView).findOne({ where: { id: vm.hostId } });
        if (!host || host.state !== 'Up') throw conflict(`the host of virtual machine ${vm.name} is ${host?.state ?? 'unknown'}; backups need its agent`);
        const chainSize = native.backupChainSize ?? Number(await effectiveSetting(s.db, 'backup.chain.size', vm.zoneId));
        const backupId = s.newId();
        const jobId = s.newId();
        const command = {
          type: 'RequestBackup' as const,
          data: {
            backupId,
            vmId,
            jobId,
            chainSize,
            isolated: params.isolated as boolean,
            quiesce: params.quiescevm as boolean,
            intervalType: 'MANUAL' as const,
            name: (params.name as string | undefined) ?? null,
            description: (params.description as string | undefined) ?? null,
            volumes: vm.volumes,
            fullOnly: vm.volumes.some((v) => v.format !== 'qcow2'),
            offeringId: offering.id,
            repositoryId: offering.repositoryId,
            hostId: vm.hostId,
            at: ctx.now,
          },
        };
        // Refused (another backup runs, no disks) before a job exists, so the caller gets 536/431 directly.
        const { state } = await s.handler.load(Streams.vmBackups(vmId), backupChainDecider);
        backupChainDecider.decide(command, state);
        await s.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, {
          type: 'CreateAsyncJob',
          data: { jobId, command: 'createBackup', userId: ctx.user.id, instanceType: 'Backup', instanceId: backupId, at: ctx.now },
        });
        try {
          const result = await s.handler.handle(Streams.vmBackups(vmId), backupChainDecider, command, { metadata: { userId: ctx.user.id } });
          await projected(s, result);
        } catch (error) {
          await s.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, { type: 'FailAsyncJob', data: { jobId, errorCode: 536, errorText: (error as Error).message, at: ctx.now } });
          throw error;
        }
        return { kind: 'async', jobid: jobId, id: backupId };
      },
    },
    {
      name: 'listBackups',
      description: 'Lists backups.',
      isAsync: false,
      adminOnly: false,
      responseObject: 'backup',
      params: [
        { name: 'id', type: 'uuid', description: 'the id of the backup' },
        { name: 'virtualmachineid', type: 'uuid', description: 'the virtual machine' },
        { name: 'zoneid', type: 'uuid', description: 'the zone' },
        { name: 'name', type: 'string', description: 'the name of the backup' },
        { name: 'backupofferingid', type: 'uuid', description: 'the backup offering' },
        { name: 'status', type: 'enum', enum: ['Allocated', 'Queued', 'BackingUp', 'BackedUp', 'Error', 'Failed', 'Restoring', 'Removed', 'Expunged'], description: 'the status' },
        { name: 'type', type: 'enum', enum: ['FULL', 'INCREMENTAL'], description: 'FULL or INCREMENTAL' },
        { name: 'listvmdetails', type: 'boolean', default: false, description: 'include the virtual machine name' },
      ],
      async handle(params) {
        const qb = s.db.getRepository(BackupView).createQueryBuilder('b').where('1 = 1');
        if (params.id) qb.andWhere('b.id = :id', { id: params.id });
        if (params.virtualmachineid) qb.andWhere('b.vm_id = :vmId', { vmId: params.virtualmachineid });
        if (params.name) qb.andWhere('b.name = :name', { name: params.name });
        if (params.backupofferingid) qb.andWhere('b.offering_id = :offeringId', { offeringId: params.backupofferingid });
        if (params.status) qb.andWhere('b.status = :status', { status: params.status });
        // Expunged backups (deleted, files gone) are listed only when asked for by status or id.
        else if (!params.id) qb.andWhere(`b.status <> 'Expunged'`);
        if (params.type) qb.andWhere('b.type = :type', { type: params.type });
        if (params.zoneid) qb.andWhere('b.vm_id IN (SELECT id FROM virtual_machines WHERE zone_id = :zoneId)', { zoneId: params.zoneid });
        const { items, count } = await page(qb, params);
        const vmIds = [...new Set(items.map((b) => b.vmId))];
        const vms = vmIds.length ? await s.db.getRepository(VirtualMachineView).createQueryBuilder('v').where('v.id IN (:...ids)', { ids: vmIds }).getMany() : [];
        const vmById = new Map(vms.map((v) => [v.id, v]));
        const offeringIds = [...new Set(items.map((b) => b.offeringId))];
        const offerings = offeringIds.length ? await s.db.getRepository(BackupOfferingView).createQueryBuilder('o').where('o.id IN (:...ids)', { ids: offeringIds }).getMany() : [];
        const zones = await s.db.getRepository(ZoneView).find();
        const zoneName = new Map(zones.map((z) => [z.id, z.name]));
        return {
          kind: 'list',
          name: 'backup',
          items: items.map((b) => {
            const vm = vmById.get(b.vmId);
            const row = { ...b, zoneId: b.zoneId ?? vm?.zoneId ?? null } as BackupView;
            return backupResponse(row, { vm: vm?.name, offering: offerings.find((o) => o.id === b.offeringId)?.name, zone: row.zoneId ? zoneName.get(row.zoneId) : undefined });
          }),
          count,
        };
      },
    },
    {
      name: 'finishBackupChain',
      description: 'Ends the current backup chain of a virtual machine: its next backup is full.',
      isAsync: false,
      adminOnly: false,
      responseObject: 'success',
      params: [{ name: 'virtualmachineid', type: 'uuid', required: true, description: 'the virtual machine' }],
      async handle(params, ctx) {
        const vmId = params.virtualmachineid as string;
        const vm = await s.db.getRepository(VirtualMachineView).findOne({ where: { id: vmId } });
        if (!vm) throw notFound(`virtual machine ${vmId} does not exist`, 'virtualmachineid');
        const result = await s.handler.handle(Streams.vmBackups(vmId), backupChainDecider, { type: 'FinishChain', data: { vmId, reason: `finishBackupChain by ${ctx.user.name}`, at: ctx.now } }, { metadata: { userId: ctx.user.id } });
        await projected(s, result);
        return { kind: 'success', displaytext: result.events.length ? 'the next backup will be full' : 'there was no chain to finish' };
      },
    },
  ];
}
