import { deciderSpecification } from '../testing/decider-specification';
import { zoneDecider } from './zone.decider';
import { BackupRepositoryAdded, ZoneCreated } from './zone.events';

const at = new Date('2026-11-22T10:00:00Z');
const zoneId = '6f1c1c3e-5a3a-4e0b-9a55-0c7d2c8f1a01';
const repositoryId = '0a6e8f7e-0e41-4f0e-9a53-2e5c1a9b7d02';
const spec = deciderSpecification(zoneDecider);

const created: ZoneCreated = { type: 'ZoneCreated', data: { zoneId, name: 'zone1', createdAt: at.toISOString() } };
const repoAdded: BackupRepositoryAdded = {
  type: 'BackupRepositoryAdded',
  data: { zoneId, repositoryId, name: 'nas1', address: 'nas.example:/export/backups', type: 'nfs', mountOptions: 'vers=4.1', encryptedCredentials: null, capacityBytes: null, createdAt: at.toISOString() },
};
const add = (name: string, id = repositoryId) => ({
  type: 'AddBackupRepository' as const,
  data: { zoneId, repositoryId: id, name, address: 'nas.example:/export/backups', type: 'nfs' as const, mountOptions: 'vers=4.1', encryptedCredentials: null, capacityBytes: null, at },
});

describe('zone decider', () => {
  it('creates a zone', () => spec.given([]).when({ type: 'CreateZone', data: { zoneId, name: 'zone1', at } }).then([created]));

  it('refuses to create a zone twice', () => spec.given([created]).when({ type: 'CreateZone', data: { zoneId, name: 'zone1', at } }).thenThrows('conflict'));

  it('deletes an empty zone', () =>
    spec.given([created]).when({ type: 'DeleteZone', data: { zoneId, at } }).then([{ type: 'ZoneDeleted', data: { zoneId, deletedAt: at.toISOString() } }]));

  it('refuses to delete a zone that has repositories', () => spec.given([created, repoAdded]).when({ type: 'DeleteZone', data: { zoneId, at } }).thenThrows('in_use'));

  it('refuses to delete an unknown zone, naming id', () => spec.given([]).when({ type: 'DeleteZone', data: { zoneId, at } }).thenThrows('not_found', 'id'));

  it('adds a repository', () => spec.given([created]).when(add('nas1')).then([repoAdded]));

  it('refuses a repository in an unknown zone, naming zoneid', () => spec.given([]).when(add('nas1')).thenThrows('not_found', 'zoneid'));

  it('refuses a second repository with the same name (any case)', () =>
    spec.given([created, repoAdded]).when(add('NAS1', '9d3c8b1a-1111-4c1d-8e2f-3a4b5c6d7e8f')).thenThrows('invalid', 'name'));

  it('a deleted repository frees the zone and its name', () => {
    const deleted = { type: 'BackupRepositoryDeleted' as const, data: { zoneId, repositoryId, deletedAt: at.toISOString() } };
    spec.given([created, repoAdded]).when({ type: 'DeleteBackupRepository', data: { zoneId, repositoryId, at } }).then([deleted]);
    spec.given([created, repoAdded, deleted]).when({ type: 'DeleteZone', data: { zoneId, at } }).then([{ type: 'ZoneDeleted', data: { zoneId, deletedAt: at.toISOString() } }]);
  });

  it('updates a repository and refuses a name taken by another', () => {
    spec
      .given([created, repoAdded])
      .when({ type: 'UpdateBackupRepository', data: { zoneId, repositoryId, mountOptions: 'vers=3', at } })
      .then([{ type: 'BackupRepositoryUpdated', data: { zoneId, repositoryId, mountOptions: 'vers=3', updatedAt: at.toISOString() } }]);
    const other = { ...repoAdded, data: { ...repoAdded.data, repositoryId: '9d3c8b1a-1111-4c1d-8e2f-3a4b5c6d7e8f', name: 'nas2' } };
    spec.given([created, repoAdded, other]).when({ type: 'UpdateBackupRepository', data: { zoneId, repositoryId, name: 'nas2', at } }).thenThrows('invalid', 'name');
  });
});
