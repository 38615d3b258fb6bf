import { Decider, DomainEvent } from '../decider';
import { notFound } from '../domain-error';

export type HostState = 'Up' | 'Down' | 'Disconnected';

export type HostRegistered = DomainEvent<
  'HostRegistered',
  { hostId: string; name: string; zoneId: string; libvirtVersion: string; qemuVersion: string; capabilities: string[]; registeredAt: string }
>;
/** Recorded at most about once a minute per host: heartbeats themselves are not events. */
export type HostHeartbeatRecorded = DomainEvent<'HostHeartbeatRecorded', { hostId: string; at: string }>;
export type HostStateChanged = DomainEvent<'HostStateChanged', { hostId: string; state: HostState; reason: string; at: string }>;
export type HostEvent = HostRegistered | HostHeartbeatRecorded | HostStateChanged;

export type HostCommand =
  | { type: 'RecordHeartbeat'; data: { hostId: string; name: string; zoneId: string; libvirtVersion: string; qemuVersion: string; capabilities: string[]; at: Date; recordEveryMs: number } }
  | { type: 'MarkDisconnected'; data: { hostId: string; silentForMs: number; at: Date } };

export interface HostAggregate {
  registered: boolean;
  state: HostState;
  lastRecordedHeartbeat: number | null;
  versions: string;
}

/** One stream per host (`host-<id>`, the id derived from the host name). */
export const hostDecider: Decider<HostCommand, HostEvent, HostAggregate> = {
  initialState: () => ({ registered: false, state: 'Down', lastRecordedHeartbeat: null, versions: '' }),

  decide(command, state) {
    switch (command.type) {
      case 'RecordHeartbeat': {
        const d = command.data;
        const events: HostEvent[] = [];
        const versions = `${d.libvirtVersion}|${d.qemuVersion}|${d.capabilities.join(',')}|${d.zoneId}|${d.name}`;
        if (!state.registered || state.versions !== versions) {
          events.push({ type: 'HostRegistered', data: { hostId: d.hostId, name: d.name, zoneId: d.zoneId, libvirtVersion: d.libvirtVersion, qemuVersion: d.qemuVersion, capabilities: d.capabilities, registeredAt: d.at.toISOString() } });
        }
        if (state.state !== 'Up') events.push({ type: 'HostStateChanged', data: { hostId: d.hostId, state: 'Up', reason: 'heartbeat received', at: d.at.toISOString() } });
        if (events.length > 0 || state.lastRecordedHeartbeat === null || d.at.getTime() - state.lastRecordedHeartbeat >= d.recordEveryMs) {
          events.push({ type: 'HostHeartbeatRecorded', data: { hostId: d.hostId, at: d.at.toISOString() } });
        }
        return events;
      }
      case 'MarkDisconnected': {
        if (!state.registered) throw notFound(`host ${command.data.hostId} is not registered`, 'id');
        if (state.state !== 'Up') return [];
        return [
          {
            type: 'HostStateChanged',
            data: { hostId: command.data.hostId, state: 'Disconnected', reason: `no heartbeat for ${Math.round(command.data.silentForMs / 1000)} s`, at: command.data.at.toISOString() },
          },
        ];
      }
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'HostRegistered': {
        const d = event.data;
        return { ...state, registered: true, versions: `${d.libvirtVersion}|${d.qemuVersion}|${d.capabilities.join(',')}|${d.zoneId}|${d.name}` };
      }
      case 'HostHeartbeatRecorded':
        return { ...state, lastRecordedHeartbeat: Date.parse(event.data.at) };
      case 'HostStateChanged':
        return { ...state, state: event.data.state };
    }
  },
};
