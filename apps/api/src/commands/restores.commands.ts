import { posix } from 'node:path';
import { asyncJobDecider, backupChainDecider, conflict, invalid, notFound, RequestRestoreCommand, Streams } from '@strata/domain';
import { BackupOfferingView, BackupRepositoryView, BackupView, HostView, NativeOfferingView, VirtualMachineView } from '@strata/read-models';
import { CommandContext, CommandDefinition } from '../http/command-definition';
import { ApiServices, projected } from './api-services';

/** A file name part made of what is safe in any path (domain names may hold anything libvirt allows). */
const fileSafe = (name: string) => name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);

/** libvirt domain names strata creates: plain, so they are safe in paths, logs and shells alike. */
const DOMAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** A backup that can be restored: it exists, is BackedUp (or already being read by another restore), and its repository is there. */
async function restorableBackup(s: ApiServices, backupId: string, parameter: string): Promise<{ backup: BackupView; repo: BackupRepositoryView }> {
  const backup = await s.db.getRepository(BackupView).findOne({ where: { id: backupId } });
  if (!backup) throw notFound(`backup ${backupId} does not exist`, parameter);
  if (backup.status !== 'BackedUp' && backup.status !== 'Restoring') throw conflict(`backup ${backupId} is ${backup.status}; only a BackedUp backup can be restored`);
  const repo = await s.db.getRepository(BackupRepositoryView).findOne({ where: { id: backup.repositoryId } });
  if (!repo) throw conflict(`the repository of backup ${backupId} no longer exists`);
  return { backup, repo };
}

async function checkQuickRestoreAllowed(s: ApiServices, backup: BackupView, quick: boolean): Promise<void> {
  if (!quick) return;
  const offering = await s.db.getRepository(BackupOfferingView).findOne({ where: { id: backup.offeringId } });
  const native = offering ? await s.db.getRepository(NativeOfferingView).findOne({ where: { id: offering.externalId } }) : null;
  if (!native?.allowQuickRestore) {
    throw invalid(`the backup offering ${offering?.name ?? backup.offeringId} of backup ${backup.id} does not allow quick restores (allowquickrestore is false)`, 'quickrestore');
  }
}

/**
 * `hostid` of restoreBackup and restoreVolumeFromBackupAndAttachToVM: the host where the quick-restored
 * VM starts, so only with quickrestore, and an Up host of the VM's zone.
 */
async function quickRestoreHost(s: ApiServices, hostId: string | undefined, quick: boolean, vm: VirtualMachineView): Promise<HostView | null> {
  if (hostId === undefined) return null;
  if (!quick) throw invalid('hostid names the host where a quick-restored virtual machine starts: give it only with quickrestore=true', 'hostid');
  const host = await s.db.getRepository(HostView).findOne({ where: { id: hostId } });
  if (!host) throw notFound(`host ${hostId} does not exist`, 'hostid');
  if (host.zoneId !== vm.zoneId) throw invalid(`host ${host.name} is in another zone than virtual machine ${vm.name}; a VM starts only on a host of its own zone`, 'hostid');
  return requireHostUp(s, host.id, 'host');
}

async function requireHostUp(s: ApiServices, hostId: string, what: string): Promise<HostView> {
  const host = await s.db.getRepository(HostView).findOne({ where: { id: hostId } });
  if (!host || host.state !== 'Up') throw conflict(`${what} ${host?.name ?? hostId} is ${host?.state ?? 'unknown'}; restores need its agent`);
  return host;
}

/** Creates the async job, then the request; a refused request fails the job and answers the refusal. */
async function requestRestore(s: ApiServices, ctx: CommandContext, data: RequestRestoreCommand['data'], command: string): Promise<void> {
  const stream = Streams.vmBackups(data.vmId);
  const { state } = await s.handler.load(stream, backupChainDecider);
  backupChainDecider.decide({ type: 'RequestRestore', data }, state);
  await s.handler.handle(Streams.asyncJob(data.jobId), asyncJobDecider, {
    type: 'CreateAsyncJob',
    data: { jobId: data.jobId, command, userId: ctx.user.id, instanceType: 'VirtualMachine', instanceId: data.targetVmId, at: ctx.now },
  });
  try {
    const result = await s.handler.handle(stream, backupChainDecider, { type: 'RequestRestore', data }, { metadata: { userId: ctx.user.id } });
    await projected(s, result);
  } catch (error) {
    await s.handler.handle(Streams.asyncJob(data.jobId), asyncJobDecider, { type: 'FailAsyncJob', data: { jobId: data.jobId, errorCode: 536, errorText: (error as Error).message, at: ctx.now } });
    throw error;
  }
}

const quickParam = { name: 'quickrestore', type: 'boolean' as const, default: false, description: 'start at once from the backup and consolidate in the background (the offering must allow quick restores)' };

export function restoreCommands(s: ApiServices): CommandDefinition[] {
  return [
    {
      name: 'restoreBackup',
      description: 'Restores every volume of a stopped virtual machine to a backup; with quickrestore the VM starts at once and its disks are consolidated in the background.',
      isAsync: true,
      adminOnly: false,
      responseObject: 'success',
      params: [
        { name: 'id', type: 'uuid', required: true, description: 'the backup' },
        quickParam,
        { name: 'hostid', type: 'uuid', adminOnly: true, description: 'with quickrestore: the host of the zone where the VM starts (another host than its own moves it there)' },
      ],
      async handle(params, ctx) {
        const { backup, repo } = await restorableBackup(s, params.id as string, 'id');
        const quick = params.quickrestore as boolean;
        await checkQuickRestoreAllowed(s, backup, quick);
        const vm = await s.db.getRepository(VirtualMachineView).findOne({ where: { id: backup.vmId } });
        if (!vm) throw conflict(`virtual machine ${backup.vmId} of backup ${backup.id} no longer exists; use createVMFromBackup`);
        if (vm.zoneId !== repo.zoneId) throw invalid(`virtual machine ${vm.name} is in another zone than the repository of backup ${backup.id}`, 'id');
        const target = await quickRestoreHost(s, params.hostid as string | undefined, quick, vm);
        if (vm.state !== 'Stopped') throw conflict(`virtual machine ${vm.name} is ${vm.state}; stop it before restoring it (or restore into a new VM with createVMFromBackup)`);
        if (quick && backup.volumes.some((v) => v.format !== 'qcow2')) {
          throw invalid(`backup ${backup.id} holds volumes that are not qcow2, which cannot run from a quick restore's overlay; restore without quickrestore`, 'quickrestore');
        }
        // Its own host too, when it moves: that host removes its definition, and it must be known stopped there.
        await requireHostUp(s, vm.hostId, 'the host of virtual machine');
        const hostId = target?.id ?? vm.hostId;
        const restoreId = s.newId();
        const jobId = s.newId();
        await requestRestore(
          s,
          ctx,
          {
            restoreId,
            jobId,
            vmId: vm.id,
            backupId: backup.id,
            kind: 'vm',
            quick,
            targetVmId: vm.id,
            hostId,
            movedFromHostId: hostId === vm.hostId ? null : vm.hostId,
            volumeIds: [],
            domainName: vm.name,
            newVmName: null,
            destinations: backup.volumes.map((v) => ({ volumeId: v.volumeId, path: v.path })),
            backupParameter: 'id',
            at: ctx.now,
          },
          'restoreBackup',
        );
        return { kind: 'async', jobid: jobId };
      },
    },
    {
      name: 'restoreVolumeFromBackupAndAttachToVM',
      description: 'Makes a new volume with the content of one backed-up volume and attaches it to a virtual machine (running or stopped).',
      isAsync: true,
      adminOnly: false,
      responseObject: 'success',
      params: [
        { name: 'backupid', type: 'uuid', required: true, description: 'the backup' },
        { name: 'volumeid', type: 'string', required: true, maxLength: 64, description: "the backed-up volume's id (listBackups' volumes)" },
        { name: 'virtualmachineid', type: 'uuid', required: true, description: 'the virtual machine that gets the volume' },
        quickParam,
        { name: 'hostid', type: 'uuid', adminOnly: true, description: "with quickrestore: the host where the VM runs with its new volume, started there when it is stopped (its own host)" },
      ],
      async handle(params, ctx) {
        const { backup, repo } = await restorableBackup(s, params.backupid as string, 'backupid');
        const volume = backup.volumes.find((v) => v.volumeId === params.volumeid);
        if (!volume) throw invalid(`volume ${params.volumeid as string} is not in backup ${backup.id}; its volumes are ${backup.volumes.map((v) => v.volumeId).join(', ')}`, 'volumeid');
        const quick = params.quickrestore as boolean;
        await checkQuickRestoreAllowed(s, backup, quick);
        const vm = await s.db.getRepository(VirtualMachineView).findOne({ where: { id: params.virtualmachineid as string } });
        if (!vm) throw notFound(`virtual machine ${params.virtualmachineid as string} does not exist`, 'virtualmachineid');
        if (vm.zoneId !== repo.zoneId) throw invalid(`virtual machine ${vm.name} is in another zone than the repository of backup ${backup.id}`, 'virtualmachineid');
        const target = await quickRestoreHost(s, params.hostid as string | undefined, quick, vm);
        if (target && target.id !== vm.hostId) {
          // The VM's definition lives only in its host's libvirt: another host could not start it.
          throw invalid(
            `virtual machine ${vm.name} is defined on host ${vm.hostId}; a volume restore starts it there only (to move the VM, quick-restore it with restoreBackup and hostid)`,
            'hostid',
          );
        }
        await requireHostUp(s, vm.hostId, 'the host of virtual machine');
        const restoreId = s.newId();
        const jobId = s.newId();
        const dir = posix.dirname(vm.volumes[0]?.path ?? volume.path);
        const extension = !quick && volume.format === 'raw' ? 'raw' : 'qcow2';
        const path = posix.join(dir, `${fileSafe(vm.name)}-restored-${volume.target}-${restoreId.slice(0, 8)}.${extension}`);
        await requestRestore(
          s,
          ctx,
          {
            restoreId,
            jobId,
            vmId: backup.vmId,
            backupId: backup.id,
            kind: 'volume',
            quick,
            targetVmId: vm.id,
            hostId: vm.hostId,
            volumeIds: [volume.volumeId],
            domainName: vm.name,
            newVmName: null,
            destinations: [{ volumeId: volume.volumeId, path }],
            startVm: target !== null && vm.state === 'Stopped',
            backupParameter: 'backupid',
            at: ctx.now,
          },
          'restoreVolumeFromBackupAndAttachToVM',
        );
        return { kind: 'async', jobid: jobId };
      },
    },
    {
      name: 'createVMFromBackup',
      description: "Creates a new virtual machine from a backup: the backed-up VM's definition with a new name, new volumes and its own identity.",
      isAsync: true,
      adminOnly: false,
      responseObject: 'virtualmachine',
      params: [
        { name: 'backupid', type: 'uuid', required: true, description: 'the backup' },
        { name: 'name', type: 'string', maxLength: 63, description: 'name of the new VM (letters, digits, dot, dash, underscore)' },
        { name: 'zoneid', type: 'uuid', description: "the zone (the backup repository's zone)" },
        { name: 'hostid', type: 'uuid', adminOnly: true, description: "the host that gets the VM (default: the backup's host)" },
        quickParam,
      ],
      async handle(params, ctx) {
        const { backup, repo } = await restorableBackup(s, params.backupid as string, 'backupid');
        if (params.zoneid && params.zoneid !== repo.zoneId) throw invalid(`backup ${backup.id} is in another zone's repository; a VM from it is created in zone ${repo.zoneId}`, 'zoneid');
        const quick = params.quickrestore as boolean;
        await checkQuickRestoreAllowed(s, backup, quick);
        const hostId = (params.hostid as string | undefined) ?? backup.hostId;
        if (params.hostid) {
          const host = await s.db.getRepository(HostView).findOne({ where: { id: hostId } });
          if (!host) throw notFound(`host ${hostId} does not exist`, 'hostid');
          if (host.zoneId !== repo.zoneId) throw invalid(`host ${host.name} is in another zone than the repository of backup ${backup.id}`, 'hostid');
        }
        await requireHostUp(s, hostId, 'host');
        const source = await s.db.getRepository(VirtualMachineView).findOne({ where: { id: backup.vmId } });
        const name = (params.name as string | undefined) ?? `${fileSafe(source?.name ?? 'vm')}-from-${backup.id.slice(0, 8)}`;
        if (!DOMAIN_NAME.test(name)) throw invalid('name may hold letters, digits, dot, dash and underscore, starting with a letter or digit (at most 63)', 'name');
        if (await s.db.getRepository(VirtualMachineView).findOne({ where: { name, hostId } })) throw invalid(`a virtual machine named ${name} already exists on that host`, 'name');
        const vmId = s.newId();
        const jobId = s.newId();
        await requestRestore(
          s,
          ctx,
          {
            restoreId: s.newId(),
            jobId,
            vmId: backup.vmId,
            backupId: backup.id,
            kind: 'newVm',
            quick,
            targetVmId: vmId,
            hostId,
            volumeIds: [],
            domainName: name,
            newVmName: name,
            destinations: backup.volumes.map((v) => ({
              volumeId: v.volumeId,
              path: posix.join(posix.dirname(v.path), `${name}-${v.target}.${!quick && v.format === 'raw' ? 'raw' : 'qcow2'}`),
            })),
            backupParameter: 'backupid',
            at: ctx.now,
          },
          'createVMFromBackup',
        );
        return { kind: 'async', jobid: jobId, id: vmId };
      },
    },
  ];
}
