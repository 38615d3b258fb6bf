import { Decider } from '../decider';
import { conflict, inUse, invalid, notFound } from '../domain-error';
import { RepositoryType } from './repository-address';
import { ZoneEvent } from './zone.events';

/** One stream per zone (`zone-<id>`): the zone and its backup repositories, so "a zone with repositories
 * cannot be deleted" and "repository names are unique in a zone" hold without cross-stream checks. */
export interface RepositoryState {
  repositoryId: string;
  name: string;
  address: string;
  type: RepositoryType;
  mountOptions: string;
  encryptedCredentials: string | null;
}

export interface ZoneState {
  status: 'absent' | 'active' | 'deleted';
  zoneId: string | null;
  name: string | null;
  repositories: Record<string, RepositoryState>;
}

export type ZoneCommand =
  | { type: 'CreateZone'; data: { zoneId: string; name: string; at: Date } }
  | { type: 'DeleteZone'; data: { zoneId: string; at: Date } }
  | {
      type: 'AddBackupRepository';
      data: {
        zoneId: string;
        repositoryId: string;
        name: string;
        address: string;
        type: RepositoryType;
        mountOptions: string;
        encryptedCredentials: string | null;
        capacityBytes: number | null;
        at: Date;
      };
    }
  | {
      type: 'UpdateBackupRepository';
      data: {
        zoneId: string;
        repositoryId: string;
        name?: string;
        address?: string;
        mountOptions?: string;
        encryptedCredentials?: string | null;
        at: Date;
      };
    }
  | { type: 'DeleteBackupRepository'; data: { zoneId: string; repositoryId: string; at: Date } };

function requireActive(state: ZoneState, parameter: string): void {
  if (state.status !== 'active') throw notFound(`zone ${state.zoneId ?? ''} does not exist`.replace(/ +/g, ' '), parameter);
}

function repositoryNamed(state: ZoneState, name: string, except?: string): RepositoryState | undefined {
  return Object.values(state.repositories).find((r) => r.name.toLowerCase() === name.toLowerCase() && r.repositoryId !== except);
}

export const zoneDecider: Decider<ZoneCommand, ZoneEvent, ZoneState> = {
  initialState: () => ({ status: 'absent', zoneId: null, name: null, repositories: {} }),

  decide(command, state) {
    switch (command.type) {
      case 'CreateZone': {
        const { zoneId, name, at } = command.data;
        if (state.status !== 'absent') throw conflict(`zone ${zoneId} already exists`);
        return [{ type: 'ZoneCreated', data: { zoneId, name, createdAt: at.toISOString() } }];
      }
      case 'DeleteZone': {
        requireActive({ ...state, zoneId: command.data.zoneId }, 'id');
        const repos = Object.values(state.repositories);
        if (repos.length > 0) {
          throw inUse(`zone ${state.name} still has backup repositories (${repos.map((r) => r.name).join(', ')}); delete them first`);
        }
        return [{ type: 'ZoneDeleted', data: { zoneId: command.data.zoneId, deletedAt: command.data.at.toISOString() } }];
      }
      case 'AddBackupRepository': {
        const d = command.data;
        requireActive({ ...state, zoneId: d.zoneId }, 'zoneid');
        if (state.repositories[d.repositoryId]) throw conflict(`backup repository ${d.repositoryId} already exists`);
        if (repositoryNamed(state, d.name)) throw invalid(`zone ${state.name} already has a backup repository named ${d.name}`, 'name');
        return [
          {
            type: 'BackupRepositoryAdded',
            data: {
              zoneId: d.zoneId,
              repositoryId: d.repositoryId,
              name: d.name,
              address: d.address,
              type: d.type,
              mountOptions: d.mountOptions,
              encryptedCredentials: d.encryptedCredentials,
              capacityBytes: d.capacityBytes,
              createdAt: d.at.toISOString(),
            },
          },
        ];
      }
      case 'UpdateBackupRepository': {
        const d = command.data;
        requireActive({ ...state, zoneId: d.zoneId }, 'id');
        if (!state.repositories[d.repositoryId]) throw notFound(`backup repository ${d.repositoryId} does not exist`, 'id');
        if (d.name !== undefined && repositoryNamed(state, d.name, d.repositoryId)) {
          throw invalid(`zone ${state.name} already has a backup repository named ${d.name}`, 'name');
        }
        const { at, ...changes } = d;
        return [{ type: 'BackupRepositoryUpdated', data: { ...changes, updatedAt: at.toISOString() } }];
      }
      case 'DeleteBackupRepository': {
        const d = command.data;
        if (state.status !== 'active' || !state.repositories[d.repositoryId]) {
          throw notFound(`backup repository ${d.repositoryId} does not exist`, 'id');
        }
        return [{ type: 'BackupRepositoryDeleted', data: { zoneId: d.zoneId, repositoryId: d.repositoryId, deletedAt: d.at.toISOString() } }];
      }
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'ZoneCreated':
        return { ...state, status: 'active', zoneId: event.data.zoneId, name: event.data.name };
      case 'ZoneDeleted':
        return { ...state, status: 'deleted' };
      case 'BackupRepositoryAdded': {
        const d = event.data;
        return {
          ...state,
          repositories: {
            ...state.repositories,
            [d.repositoryId]: {
              repositoryId: d.repositoryId,
              name: d.name,
              address: d.address,
              type: d.type,
              mountOptions: d.mountOptions,
              encryptedCredentials: d.encryptedCredentials,
            },
          },
        };
      }
      case 'BackupRepositoryUpdated': {
        const current = state.repositories[event.data.repositoryId];
        if (!current) return state;
        const { name, address, mountOptions, encryptedCredentials } = event.data;
        const next: RepositoryState = {
          ...current,
          ...(name !== undefined && { name }),
          ...(address !== undefined && { address }),
          ...(mountOptions !== undefined && { mountOptions }),
          ...(encryptedCredentials !== undefined && { encryptedCredentials }),
        };
        return { ...state, repositories: { ...state.repositories, [current.repositoryId]: next } };
      }
      case 'BackupRepositoryDeleted': {
        const { [event.data.repositoryId]: _removed, ...rest } = state.repositories;
        return { ...state, repositories: rest };
      }
    }
  },
};
