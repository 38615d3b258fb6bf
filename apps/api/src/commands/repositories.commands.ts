import { inUse, invalid, notFound, REPOSITORY_TYPES, RepositoryType, Streams, validateMountOptions, validateRepositoryAddress, zoneDecider } from '@strata/domain';
import { formatCloudStackDate } from '@strata/application';
import { BackupRepositoryView, BackupView } from '@strata/read-models';
import { CommandDefinition } from '../http/command-definition';
import { ApiServices, page, projected, zoneNamesById } from './api-services';

/** Never shows credentials: they were split off the mount options and stored encrypted. */
function repositoryResponse(r: BackupRepositoryView, zoneName: string | null) {
  return {
    id: r.id,
    zoneid: r.zoneId,
    ...(zoneName !== null && { zonename: zoneName }),
    name: r.name,
    address: r.address,
    type: r.type,
    mountopts: r.mountOptions,
    ...(r.capacityBytes !== null && { capacitybytes: r.capacityBytes }),
    usedbytes: r.usedBytes,
    created: formatCloudStackDate(r.created),
  };
}

export function repositoryCommands(s: ApiServices): CommandDefinition[] {
  const repos = () => s.db.getRepository(BackupRepositoryView);
  const zoneNames = (ids: string[]) => zoneNamesById(s, ids);
  const liveRepository = async (id: string) => {
    const repo = await repos().findOne({ where: { id } });
    if (!repo || repo.removed) throw notFound(`backup repository ${id} does not exist`, 'id');
    return repo;
  };
  const encryptCredentials = (secret: string) => (secret === '' ? null : s.secrets.encrypt(secret));
  const answer = async (id: string) => {
    const repo = await repos().findOneOrFail({ where: { id } });
    return { kind: 'object' as const, name: 'backuprepository', object: repositoryResponse(repo, (await zoneNames([repo.zoneId])).get(repo.zoneId) ?? null) };
  };

  return [
    {
      name: 'addBackupRepository',
      description: 'Adds a backup repository (NFS, CIFS, CephFS share, or a local path mounted on every host) to a zone.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'backuprepository',
      params: [
        { name: 'name', type: 'string', required: true, maxLength: 255, description: 'the name of the repository' },
        { name: 'address', type: 'string', required: true, maxLength: 1024, description: 'nfs host:/path, cifs //host/share[/path], cephfs mon[,mon]:/path, or an absolute local path' },
        { name: 'type', type: 'enum', enum: REPOSITORY_TYPES, required: true, description: 'nfs, cifs, cephfs or local' },
        { name: 'mountopts', type: 'string', sensitive: true, maxLength: 1024, description: 'comma-separated mount options; credentials (password=, secret=) are stored encrypted and never shown' },
        { name: 'zoneid', type: 'uuid', required: true, description: 'the zone of the repository' },
        { name: 'capacitybytes', type: 'long', min: 0, description: 'capacity of the repository in bytes' },
      ],
      async handle(params, ctx) {
        const type = params.type as RepositoryType;
        const address = validateRepositoryAddress(type, params.address as string);
        const mount = validateMountOptions((params.mountopts as string | undefined) ?? '');
        const name = (params.name as string).trim();
        if (name === '') throw invalid('name must not be empty', 'name');
        const zoneId = params.zoneid as string;
        const repositoryId = s.newId();
        const result = await s.handler.handle(
          Streams.zone(zoneId),
          zoneDecider,
          {
            type: 'AddBackupRepository',
            data: {
              zoneId,
              repositoryId,
              name,
              address,
              type,
              mountOptions: mount.visible,
              encryptedCredentials: encryptCredentials(mount.secret),
              capacityBytes: (params.capacitybytes as number | undefined) ?? null,
              at: ctx.now,
            },
          },
          { metadata: { userId: ctx.user.id } },
        );
        await projected(s, result);
        return answer(repositoryId);
      },
    },
    {
      name: 'listBackupRepositories',
      description: 'Lists backup repositories.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'backuprepository',
      params: [
        { name: 'id', type: 'uuid', description: 'the id of the repository' },
        { name: 'name', type: 'string', description: 'the name of the repository' },
        { name: 'zoneid', type: 'uuid', description: 'the zone of the repositories' },
      ],
      async handle(params) {
        const qb = repos().createQueryBuilder('r').where('r.removed IS NULL');
        if (params.id) qb.andWhere('r.id = :id', { id: params.id });
        if (params.name) qb.andWhere('r.name = :name', { name: params.name });
        if (params.zoneid) qb.andWhere('r.zone_id = :zoneId', { zoneId: params.zoneid });
        const { items, count } = await page(qb, params);
        const names = await zoneNames([...new Set(items.map((r) => r.zoneId))]);
        // What the backups on it take (sizes after merges and compression), from the backups read model.
        const usage: { repository_id: string; used: string; n: string }[] = items.length
          ? await s.db.query(`SELECT repository_id, COALESCE(SUM(size), 0) AS used, COUNT(*) AS n FROM backups WHERE repository_id = ANY($1) AND status NOT IN ('Expunged', 'Failed') GROUP BY repository_id`, [items.map((r) => r.id)])
          : [];
        const usageOf = (id: string) => usage.find((u) => u.repository_id === id);
        return {
          kind: 'list',
          name: 'backuprepository',
          items: items.map((r) => ({ ...repositoryResponse(r, names.get(r.zoneId) ?? null), usedbytes: Number(usageOf(r.id)?.used ?? 0), backupcount: Number(usageOf(r.id)?.n ?? 0) })),
          count,
        };
      },
    },
    {
      name: 'updateBackupRepository',
      description: 'Changes the name, address or mount options of a backup repository.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'backuprepository',
      params: [
        { name: 'id', type: 'uuid', required: true, description: 'the id of the repository' },
        { name: 'name', type: 'string', maxLength: 255, description: 'the new name' },
        { name: 'address', type: 'string', maxLength: 1024, description: 'the new address' },
        { name: 'mountopts', type: 'string', sensitive: true, maxLength: 1024, description: 'the new mount options' },
      ],
      async handle(params, ctx) {
        const repo = await liveRepository(params.id as string);
        const changes: { name?: string; address?: string; mountOptions?: string; encryptedCredentials?: string | null } = {};
        if (params.name !== undefined) {
          changes.name = (params.name as string).trim();
          if (changes.name === '') throw invalid('name must not be empty', 'name');
        }
        if (params.address !== undefined) changes.address = validateRepositoryAddress(repo.type as RepositoryType, params.address as string);
        if (params.mountopts !== undefined) {
          const mount = validateMountOptions(params.mountopts as string);
          changes.mountOptions = mount.visible;
          changes.encryptedCredentials = encryptCredentials(mount.secret);
        }
        const result = await s.handler.handle(
          Streams.zone(repo.zoneId),
          zoneDecider,
          { type: 'UpdateBackupRepository', data: { zoneId: repo.zoneId, repositoryId: repo.id, ...changes, at: ctx.now } },
          { metadata: { userId: ctx.user.id } },
        );
        await projected(s, result);
        return answer(repo.id);
      },
    },
    {
      name: 'deleteBackupRepository',
      description: 'Deletes a backup repository that holds no backups.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'success',
      params: [{ name: 'id', type: 'uuid', required: true, description: 'the id of the repository' }],
      async handle(params, ctx) {
        const repo = await liveRepository(params.id as string);
        // Backups live in another aggregate; the read model tells whether any are left on the repository.
        const backups = await s.db.getRepository(BackupView).createQueryBuilder('b').where(`b.repository_id = :id AND b.status NOT IN ('Failed', 'Removed', 'Expunged')`, { id: repo.id }).getCount();
        if (backups > 0) throw inUse(`backup repository ${repo.name} still holds ${backups} backup(s); delete them first`);
        const result = await s.handler.handle(
          Streams.zone(repo.zoneId),
          zoneDecider,
          { type: 'DeleteBackupRepository', data: { zoneId: repo.zoneId, repositoryId: repo.id, at: ctx.now } },
          { metadata: { userId: ctx.user.id } },
        );
        await projected(s, result);
        return { kind: 'success', displaytext: `backup repository ${repo.name} deleted` };
      },
    },
  ];
}
