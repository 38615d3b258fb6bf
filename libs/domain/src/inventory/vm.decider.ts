import { Decider, DomainEvent } from '../decider';
import { conflict, notFound } from '../domain-error';

export type VmPowerState = 'Running' | 'Stopped';

export interface VmVolume {
  volumeId: string;
  target: string;
  path: string;
  format: string;
  virtualSizeBytes: number;
}

export type VmDiscovered = DomainEvent<'VmDiscovered', { vmId: string; name: string; hostId: string; zoneId: string; state: VmPowerState; volumes: VmVolume[]; at: string }>;
export type VmStateChanged = DomainEvent<'VmStateChanged', { vmId: string; state: VmPowerState; hostId: string; at: string }>;
export type VmVolumesChanged = DomainEvent<'VmVolumesChanged', { vmId: string; volumes: VmVolume[]; at: string }>;
export type VmAssignedToOffering = DomainEvent<'VmAssignedToOffering', { vmId: string; offeringId: string; at: string }>;
export type VmRemovedFromOffering = DomainEvent<'VmRemovedFromOffering', { vmId: string; offeringId: string; at: string }>;
export type VmEvent = VmDiscovered | VmStateChanged | VmVolumesChanged | VmAssignedToOffering | VmRemovedFromOffering;

export type VmCommand =
  | { type: 'ReportVm'; data: { vmId: string; name: string; hostId: string; zoneId: string; state: VmPowerState; volumes: VmVolume[]; at: Date } }
  | { type: 'AssignToOffering'; data: { vmId: string; offeringId: string; offeringZoneId: string; at: Date } }
  | { type: 'RemoveFromOffering'; data: { vmId: string; at: Date } };

export interface VmAggregate {
  known: boolean;
  name: string | null;
  hostId: string | null;
  zoneId: string | null;
  state: VmPowerState;
  volumes: VmVolume[];
  offeringId: string | null;
}

const volumeKey = (vs: VmVolume[]) => JSON.stringify([...vs].sort((a, b) => a.target.localeCompare(b.target)));

/** One stream per VM (`vm-<libvirt uuid>`): what the agents report and the offering it is assigned to. */
export const vmDecider: Decider<VmCommand, VmEvent, VmAggregate> = {
  initialState: () => ({ known: false, name: null, hostId: null, zoneId: null, state: 'Stopped', volumes: [], offeringId: null }),

  decide(command, state) {
    switch (command.type) {
      case 'ReportVm': {
        const d = command.data;
        const at = d.at.toISOString();
        if (!state.known) return [{ type: 'VmDiscovered', data: { vmId: d.vmId, name: d.name, hostId: d.hostId, zoneId: d.zoneId, state: d.state, volumes: d.volumes, at } }];
        // A shut-off definition on another host (left behind by a quick restore onto a new host until that
        // host removes it, or by a migration) never takes a running VM away from where it runs: jobs for
        // the VM would go to a host whose copy is stale.
        if (d.hostId !== state.hostId && d.state === 'Stopped' && state.state === 'Running') return [];
        const events: VmEvent[] = [];
        if (state.state !== d.state || state.hostId !== d.hostId) events.push({ type: 'VmStateChanged', data: { vmId: d.vmId, state: d.state, hostId: d.hostId, at } });
        if (volumeKey(state.volumes) !== volumeKey(d.volumes)) events.push({ type: 'VmVolumesChanged', data: { vmId: d.vmId, volumes: d.volumes, at } });
        return events;
      }
      case 'AssignToOffering': {
        const d = command.data;
        if (!state.known) throw notFound(`virtual machine ${d.vmId} does not exist`, 'virtualmachineid');
        if (state.offeringId === d.offeringId) return [];
        if (state.offeringId) throw conflict(`virtual machine ${state.name} is already assigned to backup offering ${state.offeringId}; remove it first`);
        if (state.zoneId !== d.offeringZoneId) throw notFound(`backup offering ${d.offeringId} is not in the zone of virtual machine ${state.name}`, 'backupofferingid');
        return [{ type: 'VmAssignedToOffering', data: { vmId: d.vmId, offeringId: d.offeringId, at: d.at.toISOString() } }];
      }
      case 'RemoveFromOffering': {
        const d = command.data;
        if (!state.known) throw notFound(`virtual machine ${d.vmId} does not exist`, 'virtualmachineid');
        if (!state.offeringId) return [];
        return [{ type: 'VmRemovedFromOffering', data: { vmId: d.vmId, offeringId: state.offeringId, at: d.at.toISOString() } }];
      }
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'VmDiscovered': {
        const d = event.data;
        return { ...state, known: true, name: d.name, hostId: d.hostId, zoneId: d.zoneId, state: d.state, volumes: d.volumes };
      }
      case 'VmStateChanged':
        return { ...state, state: event.data.state, hostId: event.data.hostId };
      case 'VmVolumesChanged':
        return { ...state, volumes: event.data.volumes };
      case 'VmAssignedToOffering':
        return { ...state, offeringId: event.data.offeringId };
      case 'VmRemovedFromOffering':
        return { ...state, offeringId: null };
    }
  },
};
