import { DomainEvent } from '../decider';
import { RepositoryType } from './repository-address';

export type ZoneCreated = DomainEvent<'ZoneCreated', { zoneId: string; name: string; createdAt: string }>;
export type ZoneDeleted = DomainEvent<'ZoneDeleted', { zoneId: string; deletedAt: string }>;
export type BackupRepositoryAdded = DomainEvent<
  'BackupRepositoryAdded',
  {
    zoneId: string;
    repositoryId: string;
    name: string;
    address: string;
    type: RepositoryType;
    mountOptions: string;
    /** Credentials split off the mount options, encrypted by the application; null when none. */
    encryptedCredentials: string | null;
    capacityBytes: number | null;
    createdAt: string;
  }
>;
export type BackupRepositoryUpdated = DomainEvent<
  'BackupRepositoryUpdated',
  {
    zoneId: string;
    repositoryId: string;
    name?: string;
    address?: string;
    mountOptions?: string;
    encryptedCredentials?: string | null;
    updatedAt: string;
  }
>;
export type BackupRepositoryDeleted = DomainEvent<'BackupRepositoryDeleted', { zoneId: string; repositoryId: string; deletedAt: string }>;

export type ZoneEvent = ZoneCreated | ZoneDeleted | BackupRepositoryAdded | BackupRepositoryUpdated | BackupRepositoryDeleted;
