import { hostDecider, Streams, VmVolume, vmDecider } from '@strata/domain';
import { AgentReport, ReportedDomain } from '@strata/jobs';
import { CommandHandler } from '../command-handler';
import { deterministicId } from '../ids';

/** Zone names as agents know them (STRATA_AGENT_ZONE) to zone ids. */
export interface ZoneDirectory {
  zoneIdByName(name: string): Promise<string | null>;
  hostZone(hostId: string): Promise<string | null>;
}

export class UnknownZoneError extends Error {
  override readonly name = 'UnknownZoneError';
}

/** A host's id derives from its name, so an agent reinstalled on the same host keeps its identity. */
export const hostIdFor = (hostName: string) => deterministicId('strata-host', hostName);

/** A volume is a disk of a VM at a target with a path; a new path is a new volume ("disks changed"). */
export const volumeIdFor = (vmId: string, target: string, path: string) => deterministicId('strata-volume', vmId, target, path);

export function volumesOf(vmId: string, domain: ReportedDomain): VmVolume[] {
  return domain.disks.map((d) => ({ volumeId: volumeIdFor(vmId, d.target, d.sourcePath), target: d.target, path: d.sourcePath, format: d.format, virtualSizeBytes: d.virtualSizeBytes }));
}

export const HEARTBEAT_RECORD_INTERVAL_MS = 60_000;

/** Folds host agents' reports into host and VM events; idempotent, so a redelivered report changes nothing. */
export class AgentReportsUseCase {
  constructor(
    private readonly handler: CommandHandler,
    private readonly zones: ZoneDirectory,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async heartbeat(report: Extract<AgentReport, { type: 'HostHeartbeat' }>): Promise<string> {
    const zoneId = await this.zones.zoneIdByName(report.zoneName);
    if (!zoneId) throw new UnknownZoneError(`host ${report.hostName} reports zone "${report.zoneName}", which does not exist; create it with createZone`);
    const hostId = hostIdFor(report.hostName);
    await this.handler.handle(Streams.host(hostId), hostDecider, {
      type: 'RecordHeartbeat',
      data: { hostId, name: report.hostName, zoneId, libvirtVersion: report.libvirtVersion, qemuVersion: report.qemuVersion, capabilities: report.capabilities, at: new Date(report.at), recordEveryMs: HEARTBEAT_RECORD_INTERVAL_MS },
    });
    return hostId;
  }

  async domains(report: Extract<AgentReport, { type: 'DomainsReported' }>): Promise<void> {
    const hostId = hostIdFor(report.hostName);
    const zoneId = await this.zones.hostZone(hostId);
    if (!zoneId) throw new UnknownZoneError(`host ${report.hostName} reported domains before registering`);
    for (const domain of report.domains) {
      await this.handler.handle(Streams.vm(domain.uuid), vmDecider, {
        type: 'ReportVm',
        data: { vmId: domain.uuid, name: domain.name, hostId, zoneId, state: domain.state, volumes: volumesOf(domain.uuid, domain), at: new Date(report.at) },
      });
    }
  }

  async disconnect(hostId: string, silentForMs: number): Promise<void> {
    await this.handler.handle(Streams.host(hostId), hostDecider, { type: 'MarkDisconnected', data: { hostId, silentForMs, at: this.clock() } });
  }
}
