import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../support/api-client';
import { backingFile, createTestDomain, ExpectedDisks, run, TestDomain, useLibvirtCleanup, virsh, writePattern, writeScattered } from '../support/libvirt';
import { compareImages } from '../support/libvirt/expected-image';
import { agentEnv, assignWhenListed, createBackupCatalog, okCaller, waitHostUp } from '../support/backup-fixture';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { startStrata, StrataProcess, until } from '../support/strata-process';

interface Backup {
  id: string;
  type: string;
  status: string;
  fullreason?: string;
  volumes: { id: string; device: string }[];
}

interface Vm {
  id: string;
  name: string;
  state: string;
  volumes: { id: string; device: string; path: string; format: string }[];
}

const LABELS = ['b1', 'b2', 'b3', 'b4', 'b5'];

async function domainState(name: string): Promise<string> {
  return (await virsh(['domstate', name])).stdout.trim();
}

/**
 * Restores (issue 4): a chain of five backups of a two-disk VM, each restored plainly and quickly into
 * the VM, a volume restored and attached to another VM, VMs created from backups, a quick restore that
 * the guest writes to while it consolidates, a consolidation that survives an agent restart, and the
 * refusals. Every restored disk is compared with the expected image of its moment (`qemu-img compare`).
 */
describe('restores (real libvirt, real processes)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let agent: StrataProcess;
  let vm: TestDomain;
  let other: TestDomain;
  let expected: ExpectedDisks;
  let zoneId: string;
  const backups: Record<string, Backup> = {};
  const clones: string[] = [];
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;
  const env = () => agentEnv(plane, hostName, 'restore-zone');

  const ok = okCaller(() => api);
  const backupOf = async (id: string) => ((await ok('listBackups', { id })).backup as Backup[])[0];
  const vmOf = async (id: string) => ((await ok('listVirtualMachines', { id })).virtualmachine as Vm[] | undefined)?.[0];

  async function job(command: string, params: Record<string, string>, timeoutMs = 120_000): Promise<Record<string, unknown>> {
    const started = await ok(command, params);
    const done = await api.waitForJob(started.jobid as string, timeoutMs);
    if (done.jobstatus !== 1) throw new Error(`${command} failed: ${JSON.stringify(done.jobresult)} (agent: ${agent.output().slice(-3000)})`);
    return { ...done.jobresult, id: started.id };
  }

  async function backup(label: string): Promise<Backup> {
    await expected.snapshot(label);
    const r = await job('createBackup', { virtualmachineid: vm.uuid, name: label });
    return backupOf(r.id as string);
  }

  async function expectDisksAt(label: string, paths: Record<string, string>, format: Record<string, string> = {}): Promise<void> {
    for (const [target, path] of Object.entries(paths)) {
      const result = await compareImages(expected.get(target).snapshotPath(label), path, { format: format[target] ?? 'qcow2', forceShare: true });
      expect({ label, target, path, ...result }).toMatchObject({ equal: true });
    }
  }

  async function setBandwidth(mbps: number): Promise<void> {
    await ok('updateConfiguration', { name: 'nas.backup.bandwidth.limit.mbps', value: String(mbps), zoneid: zoneId });
  }

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createBackupCatalog(api, 'restore-zone', 8, { allowquickrestore: 'true' });
    zoneId = catalog.zoneId;
    agent = startStrata(['agent'], env());
    vm = await createTestDomain({ disks: [{ sizeMiB: 32 }, { sizeMiB: 16 }], running: true });
    other = await createTestDomain({ disks: [{ sizeMiB: 16 }], running: true });
    expected = await ExpectedDisks.forDomain(vm);
    await assignWhenListed(api, vm.uuid, catalog.offeringId, () => agent.output());
    await until(async () => (await vmOf(other.uuid)) !== undefined, 30_000, 'the second VM to be listed', 200);

    // Five backups with writes between them: b1 full, b2..b5 incrementals (b4 taken while stopped).
    await writePattern(vm, 'vda', { offset: 0, length: 4 << 20, pattern: 0x11 }, { expected });
    await writePattern(vm, 'vdb', { offset: 1 << 20, length: 2 << 20, pattern: 0x22 }, { expected });
    backups.b1 = await backup('b1');
    await writeScattered(vm, 'vda', { seed: 'r2', count: 24 }, { expected });
    backups.b2 = await backup('b2');
    await writeScattered(vm, 'vdb', { seed: 'r3', count: 16 }, { expected });
    await writePattern(vm, 'vda', { offset: 8 << 20, length: 2 << 20, pattern: 0x33 }, { expected });
    backups.b3 = await backup('b3');
    await vm.stop();
    await writePattern(vm, 'vdb', { offset: 4 << 20, length: 1 << 20, pattern: 0x44 }, { expected });
    backups.b4 = await backup('b4');
    await vm.start();
    await writeScattered(vm, 'vda', { seed: 'r5', count: 16 }, { expected });
    backups.b5 = await backup('b5');
    expect(LABELS.map((l) => backups[l].type)).toEqual(['FULL', 'INCREMENTAL', 'INCREMENTAL', 'INCREMENTAL', 'INCREMENTAL']);
    await setVmState('Stopped');
  });

  afterAll(async () => {
    for (const name of clones) {
      await virsh(['destroy', name]).catch(() => undefined);
      await virsh(['undefine', name, '--checkpoints-metadata']).catch(() => undefined);
    }
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    await vm?.destroy();
    await other?.destroy();
    await plane?.stop();
  });

  const vmDisks = () => ({ vda: vm.disk('vda').path, vdb: vm.disk('vdb').path });

  /** Stops (or starts) the VM and waits until listVirtualMachines says so: restoreBackup reads that state. */
  async function setVmState(state: 'Stopped' | 'Running'): Promise<void> {
    if (state === 'Stopped' && (await vm.isActive())) await vm.stop();
    if (state === 'Running' && !(await vm.isActive())) await vm.start();
    await until(async () => (await vmOf(vm.uuid))?.state === state, 30_000, `the VM to be listed ${state}`, 100);
  }

  it('restores the stopped VM to each of the five backups, exactly; the backup is Restoring meanwhile and the next backup is full', async () => {
    for (const label of [...LABELS].reverse()) {
      const started = await ok('restoreBackup', { id: backups[label].id });
      const during = (await backupOf(backups[label].id)).status;
      const done = await api.waitForJob(started.jobid as string, 120_000);
      expect({ label, jobstatus: done.jobstatus, result: done.jobresult }).toMatchObject({ jobstatus: 1 });
      expect(['Restoring', 'BackedUp']).toContain(during);
      expect((await backupOf(backups[label].id)).status).toBe('BackedUp');
      expect(await domainState(vm.name)).toBe('shut off');
      await expectDisksAt(label, vmDisks());
    }
    await expected.resetTo('b1');
    const after = await backup('after-restore');
    expect(after).toMatchObject({ type: 'FULL', fullreason: 'restored since last backup' });
  });

  it('quick-restores the VM to each backup: it runs at once, consolidates off the repository, and ends exactly at the backup', async () => {
    await setVmState('Stopped');
    for (const label of LABELS) {
      const t0 = Date.now();
      const r = await job('restoreBackup', { id: backups[label].id, quickrestore: 'true' });
      expect(await domainState(vm.name)).toBe('running');
      const consolidation = await api.waitForJob(r.consolidationjobid as string, 120_000);
      expect({ label, status: consolidation.jobstatus, result: consolidation.jobresult, ms: Date.now() - t0 }).toMatchObject({ status: 1 });
      for (const path of Object.values(vmDisks())) expect(await backingFile(path)).toBeNull();
      await setVmState('Stopped');
      await expectDisksAt(label, vmDisks());
    }
  });

  it('keeps the writes the guest makes while a quick restore consolidates', async () => {
    await setVmState('Stopped');
    await setBandwidth(16); // 2 MB/s: the pull of ~10 MiB takes seconds, long enough to write meanwhile
    try {
      const r = await job('restoreBackup', { id: backups.b3.id, quickrestore: 'true' });
      await expected.resetTo('b3');
      const pending = await api.call('queryAsyncJobResult', { jobid: r.consolidationjobid as string });
      expect(pending.body.queryasyncjobresultresponse.jobstatus).toBe(0);
      // While the VM reads from the repository, a second restore of it waits.
      const refused = await api.call('restoreBackup', { id: backups.b2.id });
      expect(refused.status).toBe(536);
      await writePattern(vm, 'vda', { offset: 12 << 20, length: 1 << 20, pattern: 0x5a }, { expected });
      await writeScattered(vm, 'vdb', { seed: 'during', count: 8 }, { expected });
      await writePattern(vm, 'vda', { offset: 0, length: 65536, pattern: 0x6b }, { expected });
      const consolidation = await api.waitForJob(r.consolidationjobid as string, 120_000);
      expect({ status: consolidation.jobstatus, result: consolidation.jobresult, agent: consolidation.jobstatus === 1 ? '' : agent.output().slice(-4000) }).toMatchObject({ status: 1 });
      await setVmState('Stopped');
      for (const path of Object.values(vmDisks())) expect(await backingFile(path)).toBeNull();
      expect(await expected.compareDomain(vm)).toEqual({ vda: expect.objectContaining({ equal: true }), vdb: expect.objectContaining({ equal: true }) });
    } finally {
      await setBandwidth(0);
    }
  });

  it('shows the progress of a slow restore in jobprogress', async () => {
    await setVmState('Stopped');
    await setBandwidth(16);
    try {
      const started = await ok('restoreBackup', { id: backups.b5.id });
      const seen: number[] = [];
      let done: { jobstatus: number } | undefined;
      while (!done) {
        const r = (await api.call('queryAsyncJobResult', { jobid: started.jobid as string })).body.queryasyncjobresultresponse;
        if (r.jobstatus !== 0) done = r;
        else if (r.jobprogress !== undefined) seen.push(r.jobprogress as number);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(done.jobstatus).toBe(1);
      expect(seen.some((p) => p > 0 && p < 100)).toBe(true);
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
      await expectDisksAt('b5', vmDisks());
    } finally {
      await setBandwidth(0);
    }
  });

  it('finishes a consolidation across an agent restart', async () => {
    await setVmState('Stopped');
    await setBandwidth(8);
    try {
      const r = await job('restoreBackup', { id: backups.b5.id, quickrestore: 'true' });
      await until(async () => (await api.call('queryAsyncJobResult', { jobid: r.consolidationjobid as string })).body.queryasyncjobresultresponse.jobprogress > 0, 30_000, 'consolidation progress', 200);
      agent.child.kill('SIGKILL');
      await agent.exited;
      agent = startStrata(['agent'], env());
      const consolidation = await api.waitForJob(r.consolidationjobid as string, 120_000);
      expect({ status: consolidation.jobstatus, result: consolidation.jobresult }).toMatchObject({ status: 1 });
      await setVmState('Stopped');
      await expectDisksAt('b5', vmDisks());
    } finally {
      await setBandwidth(0);
      await waitHostUp(api, hostName);
    }
  });

  it('restores a volume and attaches it to another running VM, plainly and quickly', async () => {
    const vdb = backups.b2.volumes.find((v) => v.device === 'vdb')!;
    await job('restoreVolumeFromBackupAndAttachToVM', { backupid: backups.b2.id, volumeid: vdb.id, virtualmachineid: other.uuid });
    const quick = await job('restoreVolumeFromBackupAndAttachToVM', { backupid: backups.b4.id, volumeid: vdb.id, virtualmachineid: other.uuid, quickrestore: 'true' });
    await api.waitForJob(quick.consolidationjobid as string, 120_000);
    const listed = await until(async () => ((await vmOf(other.uuid))?.volumes.length === 3 ? await vmOf(other.uuid) : undefined), 30_000, 'the attached volumes to be listed', 200);
    const byDevice = Object.fromEntries(listed!.volumes.map((v) => [v.device, v]));
    expect(Object.keys(byDevice).sort()).toEqual(['vda', 'vdb', 'vdc']);
    expect(await backingFile(byDevice.vdc.path)).toBeNull();
    expect(await domainState(other.name)).toBe('running');
    // A running QEMU caches qcow2 metadata: compare what it wrote once it closed the images.
    await other.stop();
    await expectDisksAt('b2', { vdb: byDevice.vdb.path });
    await expectDisksAt('b4', { vdb: byDevice.vdc.path });
  });

  it('creates new VMs from a backup, plainly (stopped) and quickly (running), with their own identity and disks', async () => {
    const plainName = `strata-e2e-clone-${randomBytes(3).toString('hex')}`;
    const quickName = `${plainName}-q`;
    clones.push(plainName, quickName);
    const plain = await job('createVMFromBackup', { backupid: backups.b4.id, name: plainName });
    expect(plain.virtualmachine).toMatchObject({ id: plain.id, name: plainName, state: 'Stopped' });
    const quick = await job('createVMFromBackup', { backupid: backups.b3.id, name: quickName, quickrestore: 'true' });
    expect(quick.virtualmachine).toMatchObject({ id: quick.id, name: quickName, state: 'Running' });
    await api.waitForJob((quick.virtualmachine as { consolidationjobid: string }).consolidationjobid, 120_000);
    expect(await domainState(quickName)).toBe('running');
    const plainVm = await until(() => vmOf(plain.id as string), 30_000, 'the new VM to be listed', 200);
    expect(plainVm).toMatchObject({ name: plainName, state: 'Stopped' });
    expect(plainVm!.id).not.toBe(vm.uuid);
    const paths = Object.fromEntries(plainVm!.volumes.map((v) => [v.device, v.path]));
    expect(Object.values(paths)).not.toContain(vm.disk('vda').path);
    await expectDisksAt('b4', paths);
    await virsh(['destroy', quickName]);
    const quickVm = await until(async () => ((await vmOf(quick.id as string))?.state === 'Stopped' ? await vmOf(quick.id as string) : undefined), 30_000, 'the quick clone to be listed stopped', 200);
    await expectDisksAt('b3', Object.fromEntries(quickVm!.volumes.map((v) => [v.device, v.path])));
  });

  it('refuses bad restores with a clear 431 or 536 and changes nothing', async () => {
    const cases: [string, Record<string, string>, number, string][] = [
      ['restoreBackup', { id: '00000000-0000-4000-8000-000000000000' }, 431, 'id'],
      ['restoreVolumeFromBackupAndAttachToVM', { backupid: backups.b1.id, volumeid: 'not-a-volume', virtualmachineid: other.uuid }, 431, 'volumeid'],
      ['restoreVolumeFromBackupAndAttachToVM', { backupid: backups.b1.id, volumeid: backups.b1.volumes[0].id, virtualmachineid: '00000000-0000-4000-8000-000000000000' }, 431, 'virtualmachineid'],
      ['createVMFromBackup', { backupid: backups.b1.id, name: 'bad name!' }, 431, 'name'],
      ['createVMFromBackup', { backupid: backups.b1.id, zoneid: '00000000-0000-4000-8000-000000000000' }, 431, 'zoneid'],
    ];
    await setVmState('Running');
    cases.push(['restoreBackup', { id: backups.b1.id }, 536, 'stop it']);
    for (const [command, params, status, words] of cases) {
      const r = await api.call(command, params);
      expect({ command, params, status: r.status }).toEqual({ command, params, status });
      expect(JSON.stringify(r.body)).toContain(words);
    }
    await setVmState('Stopped');
    const backupsBefore = (await ok('listBackups', { virtualmachineid: vm.uuid })).count;
    // An offering that does not allow quick restores: the other VM's own offering.
    const native = (await ok('createNativeBackupOffering', { name: 'plain' })).nativebackupoffering as { id: string };
    const imported = await ok('importBackupOffering', { name: 'plain', description: 'plain', zoneid: zoneId, externalid: native.id, allowuserdrivenbackups: 'true' });
    const offering = (await api.waitForJob(imported.jobid as string)).jobresult.backupoffering as { id: string };
    const assigned = await ok('assignVirtualMachineToBackupOffering', { virtualmachineid: other.uuid, backupofferingid: offering.id });
    await api.waitForJob(assigned.jobid as string);
    const otherBackup = await job('createBackup', { virtualmachineid: other.uuid });
    const noQuick = await api.call('createVMFromBackup', { backupid: otherBackup.id as string, quickrestore: 'true' });
    expect(noQuick.status).toBe(431);
    expect(JSON.stringify(noQuick.body)).toContain('quickrestore');
    // A host that is down: no restore is accepted, none is half started.
    agent.child.kill('SIGTERM');
    await agent.exited;
    await until(async () => ((await ok('listHosts', {})).host as { name: string; state: string }[]).some((h) => h.name === hostName && h.state === 'Disconnected'), 30_000, 'the host to be Disconnected', 200);
    const down = await api.call('restoreBackup', { id: backups.b1.id });
    expect(down.status).toBe(536);
    expect(JSON.stringify(down.body)).toContain('Disconnected');
    expect((await ok('listBackups', { virtualmachineid: vm.uuid })).count).toBe(backupsBefore);
    agent = startStrata(['agent'], env());
    await waitHostUp(api, hostName);
  });

  it('refuses to restore a backup that is not finished, failed or deleted with 536 naming its status, and changes nothing', async () => {
    await setVmState('Stopped');
    const backupsOf = async () => ((await ok('listBackups', { virtualmachineid: vm.uuid })).backup as Backup[]).map((b) => ({ id: b.id, status: b.status }));
    // The VM's content now, to compare with at the end (a backup reads the disks, it never changes them).
    const before: Record<string, string> = {};
    for (const [target, path] of Object.entries(vmDisks())) {
      before[target] = `${expected.get(target).snapshotPath('b1')}.before-refusals`;
      await run('qemu-img', ['convert', '-U', '-O', 'raw', path, before[target]]);
    }
    const refusedEverywhere = async (backupId: string, status: string) => {
      const attempts: [string, Record<string, string>][] = [
        ['restoreBackup', { id: backupId }],
        ['restoreBackup', { id: backupId, quickrestore: 'true' }],
        ['restoreVolumeFromBackupAndAttachToVM', { backupid: backupId, volumeid: backups.b1.volumes[0].id, virtualmachineid: other.uuid }],
        ['createVMFromBackup', { backupid: backupId, name: `strata-e2e-never-${randomBytes(3).toString('hex')}` }],
      ];
      for (const [command, params] of attempts) {
        const r = await api.call(command, params);
        expect({ command, status: r.status }).toEqual({ command, status: 536 });
        expect(JSON.stringify(r.body)).toContain(`backup ${backupId} is ${status}; only a BackedUp backup can be restored`);
      }
    };

    // Not finished: with the agent frozen (for far less than the three missed beats that make its host
    // Disconnected) a new backup waits in the host's queue; it runs once the agent goes on.
    agent.child.kill('SIGSTOP');
    let queued: Record<string, unknown>;
    try {
      queued = await ok('createBackup', { virtualmachineid: vm.uuid, isolated: 'true', name: 'queued' });
      expect((await backupOf(queued.id as string)).status).toBe('Queued');
      await refusedEverywhere(queued.id as string, 'Queued');
    } finally {
      agent.child.kill('SIGCONT');
    }
    expect((await api.waitForJob(queued.jobid as string, 120_000)).jobstatus).toBe(1);

    // Failed: for one backup the repository is moved to a read-only directory.
    const repo = ((await ok('listBackupRepositories', { zoneid: zoneId })).backuprepository as { id: string; address: string }[])[0];
    const readOnly = await mkdtemp(join(tmpdir(), 'strata-read-only-'));
    let failed: Record<string, unknown>;
    try {
      await run('mount', ['--bind', readOnly, readOnly]);
      await run('mount', ['-o', 'remount,ro,bind', readOnly]);
      await ok('updateBackupRepository', { id: repo.id, address: readOnly });
      failed = await ok('createBackup', { virtualmachineid: vm.uuid, isolated: 'true', name: 'failed' });
      expect((await api.waitForJob(failed.jobid as string, 120_000)).jobstatus).toBe(2);
    } finally {
      await ok('updateBackupRepository', { id: repo.id, address: repo.address });
      await run('umount', [readOnly], { allowFailure: true });
      await rmdir(readOnly);
    }
    expect((await backupOf(failed.id as string)).status).toBe('Failed');
    await refusedEverywhere(failed.id as string, 'Failed');

    // Deleted: the full taken after the first restore, the last of its chain, dropped and its files gone.
    const deleted = ((await ok('listBackups', { virtualmachineid: vm.uuid })).backup as (Backup & { name?: string })[]).find((b) => b.name === 'after-restore')!;
    await job('deleteBackup', { id: deleted.id });
    await until(async () => (await backupOf(deleted.id)).status === 'Expunged', 60_000, 'the deleted backup to be Expunged', 100);
    const statuses = await backupsOf();
    await refusedEverywhere(deleted.id, 'Expunged');

    // Nothing changed: no restore ran, the VM is stopped and as it was, its backups as they were.
    await setVmState('Stopped');
    expect(await domainState(vm.name)).toBe('shut off');
    for (const [target, path] of Object.entries(vmDisks())) {
      expect({ target, ...(await compareImages(before[target], path, { format: 'qcow2', forceShare: true })) }).toMatchObject({ target, equal: true });
      await rm(before[target], { force: true });
    }
    expect(await backupsOf()).toEqual(statuses);
    expect(((await vmOf(other.uuid))?.volumes ?? []).length).toBe(3);
  });
});
