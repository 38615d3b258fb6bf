import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Queue } from 'bullmq';
import { AGENT_REPORTS_QUEUE } from '@strata/jobs';
import { ApiClient } from '../support/api-client';
import { createTestDomain, TestDomain, useLibvirtCleanup } from '../support/libvirt';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { startStrata, StrataProcess, until } from '../support/strata-process';

interface Host {
  id: string;
  name: string;
  state: string;
  zoneid: string;
  libvirtversion: string;
  qemuversion: string;
}
interface Vm {
  id: string;
  name: string;
  state: string;
  hostid: string;
  volumes: { id: string; device: string; path: string; format: string; size: number }[];
}

/** A real agent against real libvirt registers its host, beats, and reports its domains with their disks. */
describe('host agent (real libvirt, real processes)', () => {
  useLibvirtCleanup();
  let plane: RunningPlane;
  let api: ApiClient;
  let agent: StrataProcess | null = null;
  let domain: TestDomain;
  const hostName = `strata-e2e-${randomBytes(3).toString('hex')}`;

  const startAgent = () =>
    startStrata(['agent'], {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      STRATA_AGENT_HOST_NAME: hostName,
      STRATA_AGENT_ZONE: 'agent-zone',
      STRATA_REDIS_URL: plane.env.STRATA_REDIS_URL,
      STRATA_QUEUE_PREFIX: plane.env.STRATA_QUEUE_PREFIX,
      STRATA_AGENT_HEARTBEAT_SECONDS: '1',
    });
  const host = async () => ((await api.call('listHosts', {})).body.listhostsresponse as { host?: Host[] }).host?.find((h) => h.name === hostName);
  const vm = async () => ((await api.call('listVirtualMachines', { id: domain.uuid })).body.listvirtualmachinesresponse as { virtualmachine?: Vm[] }).virtualmachine?.[0];

  beforeAll(async () => {
    plane = await startManagementPlane();
    api = new ApiClient(new URL(plane.endpoint).origin, plane.admin.apikey, plane.admin.secretkey);
    expect((await api.call('createZone', { name: 'agent-zone' })).status).toBe(200);
    domain = await createTestDomain({ disks: [{ sizeMiB: 64 }, { sizeMiB: 32 }], running: true });
  });

  afterAll(async () => {
    agent?.child.kill('SIGKILL');
    await domain?.destroy();
    await plane?.stop();
  });

  it('registers the host, and its VM appears within seconds with both disks', async () => {
    agent = startAgent();
    const registered = await until(async () => (await host())?.state === 'Up' && (await host()), 20_000, `the host to be Up (agent output: ${agent.output()})`, 200);
    expect(registered.libvirtversion).toMatch(/^\d+\.\d+/);
    expect(registered.qemuversion).toMatch(/^\d+\.\d+/);
    const found = await until(vm, 20_000, 'the VM to be listed', 200);
    expect(found).toMatchObject({ name: domain.name, state: 'Running', hostid: registered.id });
    expect(found.volumes.map((v) => [v.device, v.format, v.size, v.path]).sort()).toEqual([
      ['vda', 'qcow2', 64 * 1024 * 1024, domain.diskPaths[0]],
      ['vdb', 'qcow2', 32 * 1024 * 1024, domain.diskPaths[1]],
    ]);
  });

  it('follows the VM when it stops and starts', async () => {
    await domain.stop();
    await until(async () => (await vm())?.state === 'Stopped', 20_000, 'the VM to be Stopped', 200);
    await domain.start();
    await until(async () => (await vm())?.state === 'Running', 20_000, 'the VM to be Running', 200);
  });

  it('stays Up while the agent-reports queue is held up: liveness does not wait behind queued reports', async () => {
    // Paused, the queue keeps every report (heartbeats too) waiting, as a long burst of slow reports would.
    const reports = new Queue(AGENT_REPORTS_QUEUE, { connection: { url: plane.env.STRATA_REDIS_URL, maxRetriesPerRequest: null }, prefix: plane.env.STRATA_QUEUE_PREFIX });
    const waiting = async () => {
      const counts = await reports.getJobCounts('wait', 'paused');
      return counts.wait + counts.paused;
    };
    try {
      await reports.pause();
      try {
        // Three missed 1 s beats make a silent host Disconnected; watch for more than twice that.
        const watchUntil = Date.now() + 8000;
        while (Date.now() < watchUntil) {
          expect((await host())?.state).toBe('Up');
          await new Promise((r) => setTimeout(r, 500));
        }
        expect(await waiting()).toBeGreaterThanOrEqual(5); // the heartbeats of those 8 s did wait
      } finally {
        await reports.resume();
      }
      await until(async () => (await waiting()) === 0, 20_000, 'the held-up reports to be worked', 200);
      expect((await host())?.state).toBe('Up');
    } finally {
      await reports.close();
    }
  });

  it('a host whose agent dies becomes Disconnected, and Up again when it returns', async () => {
    agent!.child.kill('SIGKILL');
    await agent!.exited;
    await until(async () => (await host())?.state === 'Disconnected', 20_000, 'the host to be Disconnected', 200);
    agent = startAgent();
    await until(async () => (await host())?.state === 'Up', 20_000, 'the host to be Up again', 200);
  });

  it('runs without database credentials', async () => {
    // It was started without STRATA_DATABASE_URL and works; nothing in its environment points at PostgreSQL.
    const environ = (await readFile(`/proc/${agent!.child.pid}/environ`, 'utf8')).split('\0');
    expect(environ.some((v) => v.startsWith('STRATA_DATABASE_URL=') || v.includes('postgres://'))).toBe(false);
    expect((await host())?.state).toBe('Up');
  });
});
