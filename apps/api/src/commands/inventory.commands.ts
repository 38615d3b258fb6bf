import { asyncJobDecider, backupDeletionDecider, notFound, Streams, vmDecider } from '@strata/domain';
import { formatCloudStackDate } from '@strata/application';
import { BackupOfferingView, HostView, VirtualMachineView, ZoneView } from '@strata/read-models';
import { CommandContext, CommandDefinition } from '../http/command-definition';
import { ApiServices, page, projected } from './api-services';

function hostResponse(h: HostView) {
  return {
    id: h.id,
    name: h.name,
    zoneid: h.zoneId,
    state: h.state,
    ...(h.lastHeartbeat && { lastheartbeat: formatCloudStackDate(h.lastHeartbeat) }),
    libvirtversion: h.libvirtVersion,
    qemuversion: h.qemuVersion,
    capabilities: h.capabilities,
    created: formatCloudStackDate(h.created),
  };
}

function vmResponse(vm: VirtualMachineView) {
  return {
    id: vm.id,
    name: vm.name,
    state: vm.state,
    hostid: vm.hostId,
    zoneid: vm.zoneId,
    ...(vm.backupOfferingId && { backupofferingid: vm.backupOfferingId }),
    volumes: vm.volumes.map((v) => ({
      id: v.volumeId,
      path: v.path,
      format: v.format,
      size: v.virtualSizeBytes,
      device: v.target,
      // Raw or non-qcow2 disks have no persistent dirty bitmaps: every backup of them is full.
      ...(v.format !== 'qcow2' && { fullbackuponly: true }),
    })),
    created: formatCloudStackDate(vm.created),
  };
}

export function inventoryCommands(s: ApiServices): CommandDefinition[] {
  const vms = () => s.db.getRepository(VirtualMachineView);

  /** An async command whose work is done at once: the job is created, the change made, the job finished. */
  async function immediateJob(ctx: CommandContext, command: string, instanceId: string, work: () => Promise<void>) {
    const jobId = s.newId();
    await s.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, {
      type: 'CreateAsyncJob',
      data: { jobId, command, userId: ctx.user.id, instanceType: 'VirtualMachine', instanceId, at: ctx.now },
    });
    await work();
    const done = await s.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, { type: 'SucceedAsyncJob', data: { jobId, resultType: 'success', result: { success: true }, at: ctx.now } });
    await projected(s, done);
    return { kind: 'async' as const, jobid: jobId };
  }

  return [
    {
      name: 'listHosts',
      description: 'Lists the KVM hosts whose agents registered.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'host',
      params: [
        { name: 'id', type: 'uuid', description: 'the id of the host' },
        { name: 'zoneid', type: 'uuid', description: 'the zone of the hosts' },
        { name: 'state', type: 'enum', enum: ['Up', 'Down', 'Disconnected'], description: 'Up, Down or Disconnected' },
      ],
      async handle(params) {
        const qb = s.db.getRepository(HostView).createQueryBuilder('h').where('1 = 1');
        if (params.id) qb.andWhere('h.id = :id', { id: params.id });
        if (params.zoneid) qb.andWhere('h.zone_id = :zoneId', { zoneId: params.zoneid });
        if (params.state) qb.andWhere('h.state = :state', { state: params.state });
        const { items, count } = await page(qb, params);
        return { kind: 'list', name: 'host', items: items.map(hostResponse), count };
      },
    },
    {
      name: 'listVirtualMachines',
      description: 'Lists the virtual machines the host agents report, with their volumes.',
      isAsync: false,
      adminOnly: false,
      responseObject: 'virtualmachine',
      params: [
        { name: 'id', type: 'uuid', description: 'the id of the virtual machine' },
        { name: 'zoneid', type: 'uuid', description: 'the zone' },
        { name: 'hostid', type: 'uuid', adminOnly: true, description: 'the host' },
        { name: 'backupofferingid', type: 'uuid', description: 'the backup offering the VMs are assigned to' },
        { name: 'state', type: 'enum', enum: ['Running', 'Stopped', 'BackupError'], description: 'Running, Stopped or BackupError' },
      ],
      async handle(params) {
        const qb = vms().createQueryBuilder('v').where('1 = 1');
        if (params.id) qb.andWhere('v.id = :id', { id: params.id });
        if (params.zoneid) qb.andWhere('v.zone_id = :zoneId', { zoneId: params.zoneid });
        if (params.hostid) qb.andWhere('v.host_id = :hostId', { hostId: params.hostid });
        if (params.backupofferingid) qb.andWhere('v.backup_offering_id = :offeringId', { offeringId: params.backupofferingid });
        if (params.state) qb.andWhere('v.state = :state', { state: params.state });
        const { items, count } = await page(qb, params);
        return { kind: 'list', name: 'virtualmachine', items: items.map(vmResponse), count };
      },
    },
    {
      name: 'assignVirtualMachineToBackupOffering',
      description: 'Assigns a virtual machine to an imported backup offering of its zone.',
      isAsync: true,
      adminOnly: false,
      responseObject: 'success',
      params: [
        { name: 'virtualmachineid', type: 'uuid', required: true, description: 'the virtual machine' },
        { name: 'backupofferingid', type: 'uuid', required: true, description: 'the imported backup offering' },
      ],
      async handle(params, ctx) {
        const vmId = params.virtualmachineid as string;
        const offering = await s.db.getRepository(BackupOfferingView).findOne({ where: { id: params.backupofferingid as string } });
        if (!offering || offering.removed || offering.status !== 'Active') throw notFound(`backup offering ${params.backupofferingid} does not exist`, 'backupofferingid');
        const zone = await s.db.getRepository(ZoneView).findOne({ where: { id: offering.zoneId } });
        if (!zone || zone.removed) throw notFound(`the zone of backup offering ${offering.name} no longer exists`, 'backupofferingid');
        // Refuse before creating a job: the decider's refusal becomes the answer's 431/536.
        const { state } = await s.handler.load(Streams.vm(vmId), vmDecider);
        vmDecider.decide({ type: 'AssignToOffering', data: { vmId, offeringId: offering.id, offeringZoneId: offering.zoneId, at: ctx.now } }, state);
        return immediateJob(ctx, 'assignVirtualMachineToBackupOffering', vmId, async () => {
          const r = await s.handler.handle(Streams.vm(vmId), vmDecider, { type: 'AssignToOffering', data: { vmId, offeringId: offering.id, offeringZoneId: offering.zoneId, at: ctx.now } }, { metadata: { userId: ctx.user.id } });
          await projected(s, r);
        });
      },
    },
    {
      name: 'removeVirtualMachineFromBackupOffering',
      description: 'Stops backing up a virtual machine; its backups are kept, or with forced deleted (merged and removed safely, as deleteBackup does).',
      isAsync: true,
      adminOnly: false,
      responseObject: 'success',
      params: [
        { name: 'virtualmachineid', type: 'uuid', required: true, description: 'the virtual machine' },
        { name: 'forced', type: 'boolean', default: false, description: 'also delete its backups' },
      ],
      async handle(params, ctx) {
        const vmId = params.virtualmachineid as string;
        const { state } = await s.handler.load(Streams.vm(vmId), vmDecider);
        vmDecider.decide({ type: 'RemoveFromOffering', data: { vmId, at: ctx.now } }, state);
        return immediateJob(ctx, 'removeVirtualMachineFromBackupOffering', vmId, async () => {
          const r = await s.handler.handle(Streams.vm(vmId), vmDecider, { type: 'RemoveFromOffering', data: { vmId, at: ctx.now } }, { metadata: { userId: ctx.user.id } });
          await projected(s, r);
          if (params.forced) {
            // Every backup is deleted the safe way (one removal at a time, merges where others depend on one).
            const d = await s.handler.handle(Streams.vmBackups(vmId), backupDeletionDecider, { type: 'DeleteAllBackups', data: { jobId: s.newId(), forced: true, reason: `virtual machine removed from its backup offering by ${ctx.user.name} (forced)`, at: ctx.now } }, { metadata: { userId: ctx.user.id } });
            await projected(s, d);
          }
        });
      },
    },
  ];
}
