import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from './api-client';
import { RunningPlane } from './management-plane';
import { until } from './strata-process';

/** The answer inside the command's envelope; anything but 200 throws with the whole body. */
export function okCaller(api: () => ApiClient) {
  return async (command: string, params: Record<string, string>): Promise<Record<string, unknown>> => {
    const r = await api().call(command, params);
    if (r.status !== 200) throw new Error(`${command}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body[`${command.toLowerCase()}response`] as Record<string, unknown>;
  };
}

/** The environment of a test agent: only Redis and its identity, with a 1 s heartbeat. */
export function agentEnv(plane: RunningPlane, hostName: string, zoneName: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    STRATA_AGENT_HOST_NAME: hostName,
    STRATA_AGENT_ZONE: zoneName,
    STRATA_REDIS_URL: plane.env.STRATA_REDIS_URL,
    STRATA_QUEUE_PREFIX: plane.env.STRATA_QUEUE_PREFIX,
    STRATA_AGENT_HEARTBEAT_SECONDS: '1',
    ...extra,
  };
}

export interface BackupCatalog {
  zoneId: string;
  repoDir: string;
  offeringId: string;
}

/** A zone, a local repository in a temp dir, and a native offering imported into the zone. */
export async function createBackupCatalog(api: ApiClient, zoneName: string, chainSize?: number, nativeParams: Record<string, string> = {}): Promise<BackupCatalog> {
  const ok = okCaller(() => api);
  const zone = (await ok('createZone', { name: zoneName })).zone as { id: string };
  const repoDir = await mkdtemp(join(tmpdir(), 'strata-repo-'));
  await ok('addBackupRepository', { name: 'local', type: 'local', address: repoDir, zoneid: zone.id });
  const native = (await ok('createNativeBackupOffering', { name: 'gold', ...(chainSize !== undefined && { backupchainsize: String(chainSize) }), ...nativeParams })).nativebackupoffering as { id: string };
  const imported = await ok('importBackupOffering', { name: 'gold', description: 'gold', zoneid: zone.id, externalid: native.id, allowuserdrivenbackups: 'true' });
  const offering = (await api.waitForJob(imported.jobid as string)).jobresult.backupoffering as { id: string };
  return { zoneId: zone.id, repoDir, offeringId: offering.id };
}

/** Waits until the agent has reported the domain, assigns it to the offering; returns volume ids by device. */
export async function assignWhenListed(api: ApiClient, vmId: string, offeringId: string, agentOutput: () => string): Promise<Record<string, string>> {
  const ok = okCaller(() => api);
  const vm = await until(
    async () => ((await ok('listVirtualMachines', { id: vmId })).virtualmachine as { volumes: { id: string; device: string }[] }[] | undefined)?.[0],
    30_000,
    `the VM to be listed (agent: ${agentOutput()})`,
    200,
  );
  const assigned = await ok('assignVirtualMachineToBackupOffering', { virtualmachineid: vmId, backupofferingid: offeringId });
  const job = await api.waitForJob(assigned.jobid as string);
  if (job.jobstatus !== 1) throw new Error(`assignVirtualMachineToBackupOffering failed: ${JSON.stringify(job.jobresult)}`);
  return Object.fromEntries(vm.volumes.map((v) => [v.device, v.id]));
}

/** createBackup needs the host Up: after an agent (or libvirtd) restart, wait for its heartbeat. */
export async function waitHostUp(api: ApiClient, hostName: string): Promise<void> {
  const ok = okCaller(() => api);
  const hosts = async () => ((await ok('listHosts', {})).host as { name: string; state: string }[] | undefined) ?? [];
  await until(async () => (await hosts()).some((h) => h.name === hostName && h.state === 'Up'), 30_000, `host ${hostName} to be Up (was ${(await hosts()).find((h) => h.name === hostName)?.state})`, 200);
}
