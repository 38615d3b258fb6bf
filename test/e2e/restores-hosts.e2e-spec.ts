import { randomBytes, randomUUID } from 'node:crypto';
import { PLACEMENT_NS } from '@strata/hypervisor';
import { ApiClient } from '../support/api-client';
import { agentEnv, assignWhenListed, createBackupCatalog, okCaller, waitHostUp } from '../support/backup-fixture';
import { backingFile, createTestDomain, ExpectedDisks, run, TestDomain, useLibvirtCleanup, virsh, writePattern, writeScattered } from '../support/libvirt';
import { compareImages } from '../support/libvirt/expected-image';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { startStrata, stopAll, StrataProcess, until } from '../support/strata-process';

interface Vm {
  id: string;
  name: string;
  state: string;
  hostid: string;
  volumes: { id: string; device: string; path: string }[];
}

interface Host {
  id: string;
  name: string;
  state: string;
}

/**
 * `hostid` of restoreBackup (issue 4): a quick restore that starts the VM on another Up host of its zone
 * moves it there. Two agents share this machine's libvirt as hosts A and B (STRATA_AGENT_SHARED_LIBVIRT:
 * each reports only the domains placed on it); the VM starts on A. Quick-restored with hostid B, it is
 * listed on B, running, consolidates on B (A is only asked to forget its definition, which with a shared
 * libvirt it recognises as B's), ends exactly at the backup, and its next backup runs on B. hostid without
 * quickrestore, an unknown host, a host of another zone and a host that is down are refused, changing nothing.
 * A quick volume restore with hostid starts the stopped VM on its host with the new volume.
 */
describe('quick restore onto another host (two agents, one libvirt)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let vm: TestDomain;
  let expected: ExpectedDisks;
  const agents: Record<string, StrataProcess> = {};
  const backups: Record<string, { id: string; volumes: { id: string; device: string }[] }> = {};
  const suffix = randomBytes(3).toString('hex');
  const names = { a: `strata-e2e-a-${suffix}`, b: `strata-e2e-b-${suffix}`, down: `strata-e2e-down-${suffix}`, far: `strata-e2e-far-${suffix}` };
  const hosts: Record<keyof typeof names, Host> = {} as Record<keyof typeof names, Host>;
  const ok = okCaller(() => api);
  const output = () => Object.entries(agents).map(([name, a]) => `--- ${name}\n${a.output().slice(-2500)}`).join('\n');
  const vmOf = async () => ((await ok('listVirtualMachines', { id: vm.uuid })).virtualmachine as Vm[] | undefined)?.[0];
  const listHosts = async () => ((await ok('listHosts', {})).host as Host[] | undefined) ?? [];

  async function job(command: string, params: Record<string, string>): Promise<Record<string, unknown>> {
    const started = await ok(command, params);
    const done = await api.waitForJob(started.jobid as string, 120_000);
    if (done.jobstatus !== 1) throw new Error(`${command} failed: ${JSON.stringify(done.jobresult)}\n${output()}`);
    return { ...done.jobresult, id: started.id };
  }

  async function backup(label: string): Promise<void> {
    await expected.snapshot(label);
    const r = await job('createBackup', { virtualmachineid: vm.uuid, name: label });
    backups[label] = ((await ok('listBackups', { id: r.id as string })).backup as (typeof backups)[string][])[0];
  }

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    const catalog = await createBackupCatalog(api, 'hosts-zone', 8, { allowquickrestore: 'true' });
    await ok('createZone', { name: 'far-zone' });
    vm = await createTestDomain({ disks: [{ sizeMiB: 16 }], running: true });
    // The VM starts out placed on A, as if A's libvirt were A's alone.
    await virsh(['metadata', vm.name, PLACEMENT_NS, '--key', 'strata', '--set', `<placement host='${names.a}'/>`, '--live', '--config']);
    const shared = { STRATA_AGENT_SHARED_LIBVIRT: 'true' };
    agents.a = startStrata(['agent'], agentEnv(plane, names.a, 'hosts-zone', shared));
    agents.b = startStrata(['agent'], agentEnv(plane, names.b, 'hosts-zone', shared));
    // Hosts that only register (libvirt's test driver): one to go down, one in another zone.
    agents.down = startStrata(['agent'], agentEnv(plane, names.down, 'hosts-zone', { STRATA_LIBVIRT_URI: 'test:///default' }));
    agents.far = startStrata(['agent'], agentEnv(plane, names.far, 'far-zone', { STRATA_LIBVIRT_URI: 'test:///default' }));
    for (const name of Object.values(names)) await waitHostUp(api, name);
    for (const [key, name] of Object.entries(names)) hosts[key as keyof typeof names] = (await listHosts()).find((h) => h.name === name)!;
    await assignWhenListed(api, vm.uuid, catalog.offeringId, output);
    expect((await vmOf())?.hostid).toBe(hosts.a.id);

    expected = await ExpectedDisks.forDomain(vm);
    await writePattern(vm, 'vda', { offset: 0, length: 2 << 20, pattern: 0x41 }, { expected });
    await backup('b1');
    await writeScattered(vm, 'vda', { seed: 'hosts-2', count: 16 }, { expected });
    await backup('b2');
    await vm.stop();
    await until(async () => (await vmOf())?.state === 'Stopped', 30_000, 'the VM to be listed Stopped', 100);
    agents.down.child.kill('SIGTERM');
    await agents.down.exited;
    await until(async () => (await listHosts()).find((h) => h.name === names.down)?.state === 'Disconnected', 30_000, 'the host to be Disconnected', 200);
  });

  afterAll(async () => {
    await stopAll(Object.values(agents));
    await vm?.destroy();
    await plane?.stop();
  });

  it('refuses hostid without quickrestore, an unknown host, a host of another zone and a host that is down; nothing changes', async () => {
    const id = backups.b1.id;
    const cases: [string, Record<string, string>, number, string][] = [
      ['restoreBackup', { id, hostid: hosts.b.id }, 431, 'give it only with quickrestore=true'],
      ['restoreBackup', { id, hostid: hosts.b.id, quickrestore: 'false' }, 431, 'give it only with quickrestore=true'],
      ['restoreBackup', { id, quickrestore: 'true', hostid: randomUUID() }, 431, 'does not exist'],
      ['restoreBackup', { id, quickrestore: 'true', hostid: hosts.far.id }, 431, `host ${names.far} is in another zone than virtual machine ${vm.name}`],
      ['restoreBackup', { id, quickrestore: 'true', hostid: hosts.down.id }, 536, `host ${names.down} is Disconnected`],
      ['restoreVolumeFromBackupAndAttachToVM', { backupid: id, volumeid: backups.b1.volumes[0].id, virtualmachineid: vm.uuid, hostid: hosts.b.id }, 431, 'give it only with quickrestore=true'],
      ['restoreVolumeFromBackupAndAttachToVM', { backupid: id, volumeid: backups.b1.volumes[0].id, virtualmachineid: vm.uuid, quickrestore: 'true', hostid: hosts.b.id }, 431, 'a volume restore starts it there only'],
    ];
    const disk = vm.disk('vda').path;
    const before = `${expected.get('vda').snapshotPath('b2')}.before`;
    await run('qemu-img', ['convert', '-U', '-O', 'raw', disk, before]);
    for (const [command, params, status, words] of cases) {
      const r = await api.call(command, params);
      expect({ command, params, status: r.status }).toEqual({ command, params, status });
      expect(JSON.stringify(r.body)).toContain(words);
      if (status === 431) expect(JSON.stringify(r.body)).toContain('hostid');
    }
    expect(await vmOf()).toMatchObject({ hostid: hosts.a.id, state: 'Stopped' });
    expect((await virsh(['domstate', vm.name])).stdout.trim()).toBe('shut off');
    expect(await compareImages(before, disk, { format: 'qcow2', forceShare: true })).toMatchObject({ equal: true });
    expect(((await ok('listBackups', { id })).backup as { status: string }[])[0].status).toBe('BackedUp');
  });

  it('starts the VM on B: listed there running, consolidated there, exactly at the backup; its next backup runs on B', async () => {
    const r = await job('restoreBackup', { id: backups.b1.id, quickrestore: 'true', hostid: hosts.b.id });
    const listed = await until(async () => {
      const v = await vmOf();
      return v?.hostid === hosts.b.id && v.state === 'Running' ? v : undefined;
    }, 30_000, `the VM to be listed Running on B (${JSON.stringify(await vmOf())})`, 100);
    expect(listed.volumes.map((v) => v.path)).toEqual([vm.disk('vda').path]);
    expect((await virsh(['domstate', vm.name])).stdout.trim()).toBe('running');

    const consolidation = await api.waitForJob(r.consolidationjobid as string, 120_000);
    expect({ status: consolidation.jobstatus, result: consolidation.jobresult }).toMatchObject({ status: 1 });
    expect(await backingFile(vm.disk('vda').path)).toBeNull();
    // The pull ran on B's queue; A only got the job to forget its definition, which is B's now.
    const pulled = `consolidation of restore`;
    expect(agents.b.output()).toContain(pulled);
    expect(agents.a.output()).not.toContain(pulled);
    await until(async () => agents.a.output().includes(`the definition here is placed on host ${names.b}`), 30_000, `A to leave B's definition alone\n${output()}`, 200);
    expect((await virsh(['dumpxml', vm.name, '--inactive'])).stdout).toMatch(new RegExp(`placement [^>]*host=['"]${names.b}['"]`));

    await vm.stop();
    await until(async () => (await vmOf())?.state === 'Stopped', 30_000, 'the VM to be listed Stopped', 100);
    expect(await expected.get('vda').compareWith(vm.disk('vda').path, 'b1')).toMatchObject({ equal: true });
    // A few reports later it is still B's (A does not report it, and takes it back from nobody).
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await vmOf()).toMatchObject({ hostid: hosts.b.id, state: 'Stopped' });

    await expected.resetTo('b1');
    await writeScattered(vm, 'vda', { seed: 'hosts-after', count: 4 }, { expected });
    await backup('after');
    const after = ((await ok('listBackups', { id: backups.after.id })).backup as { hostid: string; type: string; fullreason?: string }[])[0];
    expect(after).toMatchObject({ hostid: hosts.b.id, type: 'FULL', fullreason: 'restored since last backup' });
    expect(agents.b.output()).toContain(`backup ${backups.after.id}`);
  });

  it('a quick volume restore with hostid starts the stopped VM on its host with the new volume, consolidated there', async () => {
    await until(async () => (await vmOf())?.state === 'Stopped', 30_000, 'the VM to be listed Stopped', 100);
    const vda = backups.b2.volumes.find((v) => v.device === 'vda')!;
    const pullsOnB = () => agents.b.output().split('no longer reads from the repository').length - 1;
    const pullsBefore = pullsOnB();
    const r = await job('restoreVolumeFromBackupAndAttachToVM', { backupid: backups.b2.id, volumeid: vda.id, virtualmachineid: vm.uuid, quickrestore: 'true', hostid: hosts.b.id });
    const listed = await until(async () => {
      const v = await vmOf();
      return v?.hostid === hosts.b.id && v.state === 'Running' && v.volumes.length === 2 ? v : undefined;
    }, 30_000, `the VM to be listed Running on B with two volumes (${JSON.stringify(await vmOf())})`, 100);
    const consolidation = await api.waitForJob(r.consolidationjobid as string, 120_000);
    expect({ status: consolidation.jobstatus, result: consolidation.jobresult }).toMatchObject({ status: 1 });
    const vdb = listed.volumes.find((v) => v.device === 'vdb')!;
    expect(await backingFile(vdb.path)).toBeNull();
    expect(pullsOnB()).toBe(pullsBefore + 1);
    await vm.stop();
    expect(await expected.get('vda').compareWith(vdb.path, 'b2')).toMatchObject({ equal: true });
  });
});
