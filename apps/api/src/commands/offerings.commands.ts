import {
  asyncJobDecider,
  backupOfferingDecider,
  COMPRESSION_LIBRARIES,
  CompressionLibrary,
  inUse,
  invalid,
  nativeOfferingDecider,
  notFound,
  Streams,
  VALIDATION_STEPS,
  ValidationStep,
  zoneDecider,
} from '@strata/domain';
import { BACKUP_PROVIDER, backupOfferingResponse, formatCloudStackDate } from '@strata/application';
import { BackupOfferingView, NativeOfferingView, VirtualMachineView, ZoneView } from '@strata/read-models';
import { CommandDefinition } from '../http/command-definition';
import { ApiServices, page, projected, zoneNamesById } from './api-services';

function nativeOfferingResponse(o: NativeOfferingView) {
  return {
    id: o.id,
    name: o.name,
    compress: o.compress,
    validate: o.validate,
    validationsteps: o.validationSteps,
    allowquickrestore: o.allowQuickRestore,
    allowextractfile: o.allowExtractFile,
    ...(o.backupChainSize !== null && { backupchainsize: o.backupChainSize }),
    compressionlibrary: o.compressionLibrary,
    created: formatCloudStackDate(o.created),
    ...(o.removed && { removed: formatCloudStackDate(o.removed) }),
  };
}

const BOOLEAN_FILTERS = [
  ['compress', 'compress'],
  ['validate', 'validate'],
  ['allowquickrestore', 'allow_quick_restore'],
  ['allowextractfile', 'allow_extract_file'],
] as const;

export function offeringCommands(s: ApiServices): CommandDefinition[] {
  const natives = () => s.db.getRepository(NativeOfferingView);
  const offerings = () => s.db.getRepository(BackupOfferingView);
  const zoneNames = (ids: string[]) => zoneNamesById(s, ids);

  return [
    {
      name: 'createNativeBackupOffering',
      description: 'Creates a native backup offering: how backups are taken, compressed, validated and restored.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'nativebackupoffering',
      params: [
        { name: 'name', type: 'string', required: true, maxLength: 255, description: 'the name of the offering' },
        { name: 'compress', type: 'boolean', default: false, description: 'compress backups after they complete' },
        { name: 'validate', type: 'boolean', default: false, description: 'validate backups after they complete' },
        { name: 'validationsteps', type: 'list', description: 'validation steps: wait_for_boot, screenshot, execute_command (default screenshot)' },
        { name: 'allowquickrestore', type: 'boolean', default: false, description: 'allow quick restores that boot from the backup' },
        { name: 'allowextractfile', type: 'boolean', default: false, description: 'allow extracting single files' },
        { name: 'backupchainsize', type: 'integer', min: -1, max: 1000, description: 'backups per chain, overriding backup.chain.size; 1 = always full, below 1 = unlimited' },
        { name: 'compressionlibrary', type: 'enum', enum: COMPRESSION_LIBRARIES, default: 'zstd', description: 'zstd (default) or zlib' },
      ],
      async handle(params, ctx) {
        const name = (params.name as string).trim();
        if (name === '') throw invalid('name must not be empty', 'name');
        const steps = ((params.validationsteps as string[] | undefined) ?? ['screenshot']).map((x) => x.trim().toLowerCase());
        for (const step of steps) {
          if (!(VALIDATION_STEPS as readonly string[]).includes(step)) throw invalid(`validationsteps takes ${VALIDATION_STEPS.join(', ')}`, 'validationsteps');
        }
        const taken = await natives().createQueryBuilder('n').where('lower(n.name) = lower(:name) AND n.removed IS NULL', { name }).getCount();
        if (taken > 0) throw invalid(`a native backup offering named ${name} already exists`, 'name');
        const offeringId = s.newId();
        const result = await s.handler.handle(
          Streams.nativeOffering(offeringId),
          nativeOfferingDecider,
          {
            type: 'CreateNativeOffering',
            data: {
              offeringId,
              name,
              compress: params.compress as boolean,
              validate: params.validate as boolean,
              validationSteps: [...new Set(steps)] as ValidationStep[],
              allowQuickRestore: params.allowquickrestore as boolean,
              allowExtractFile: params.allowextractfile as boolean,
              backupChainSize: (params.backupchainsize as number | undefined) ?? null,
              compressionLibrary: params.compressionlibrary as CompressionLibrary,
              at: ctx.now,
            },
          },
          { metadata: { userId: ctx.user.id } },
        );
        await projected(s, result);
        const view = await natives().findOneOrFail({ where: { id: offeringId } });
        return { kind: 'object', name: 'nativebackupoffering', object: nativeOfferingResponse(view) };
      },
    },
    {
      name: 'listNativeBackupOfferings',
      description: 'Lists native backup offerings.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'nativebackupoffering',
      params: [
        { name: 'id', type: 'uuid', description: 'the id of the offering' },
        { name: 'name', type: 'string', description: 'the name of the offering' },
        { name: 'compress', type: 'boolean', description: 'only offerings that compress (or not)' },
        { name: 'validate', type: 'boolean', description: 'only offerings that validate (or not)' },
        { name: 'allowquickrestore', type: 'boolean', description: 'only offerings that allow quick restore (or not)' },
        { name: 'allowextractfile', type: 'boolean', description: 'only offerings that allow file extraction (or not)' },
        { name: 'showremoved', type: 'boolean', default: false, description: 'include deleted offerings' },
      ],
      async handle(params) {
        const qb = natives().createQueryBuilder('n');
        if (!params.showremoved) qb.where('n.removed IS NULL');
        if (params.id) qb.andWhere('n.id = :id', { id: params.id });
        if (params.name) qb.andWhere('n.name = :name', { name: params.name });
        for (const [param, column] of BOOLEAN_FILTERS) {
          if (params[param] !== undefined) qb.andWhere(`n.${column} = :${param}`, { [param]: params[param] });
        }
        const { items, count } = await page(qb, params);
        return { kind: 'list', name: 'nativebackupoffering', items: items.map(nativeOfferingResponse), count };
      },
    },
    {
      name: 'deleteNativeBackupOffering',
      description: 'Deletes a native backup offering that no imported offering uses.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'success',
      params: [{ name: 'id', type: 'uuid', required: true, description: 'the id of the offering' }],
      async handle(params, ctx) {
        const offeringId = params.id as string;
        const result = await s.handler.handle(Streams.nativeOffering(offeringId), nativeOfferingDecider, { type: 'DeleteNativeOffering', data: { offeringId, at: ctx.now } }, {
          metadata: { userId: ctx.user.id },
        });
        await projected(s, result);
        return { kind: 'success', displaytext: `native backup offering ${offeringId} deleted` };
      },
    },
    {
      name: 'importBackupOffering',
      description: 'Imports a native backup offering into a zone so that VMs can be assigned to it.',
      isAsync: true,
      adminOnly: true,
      responseObject: 'backupoffering',
      params: [
        { name: 'name', type: 'string', required: true, maxLength: 255, description: 'the name of the offering' },
        { name: 'description', type: 'string', required: true, maxLength: 4096, description: 'the description of the offering' },
        { name: 'zoneid', type: 'uuid', required: true, description: 'the zone to import into' },
        { name: 'externalid', type: 'uuid', required: true, description: 'the id of the native backup offering' },
        { name: 'allowuserdrivenbackups', type: 'boolean', required: true, description: 'whether users may take backups themselves' },
        { name: 'repositoryid', type: 'uuid', description: 'pin a repository of the zone (default: the one with most free space)' },
      ],
      async handle(params, ctx) {
        const name = (params.name as string).trim();
        if (name === '') throw invalid('name must not be empty', 'name');
        const zoneId = params.zoneid as string;
        const nativeOfferingId = params.externalid as string;
        const repositoryId = (params.repositoryid as string | undefined) ?? null;
        // Refuse what is already known to be wrong at once; the import job checks again.
        const { state: native } = await s.handler.load(Streams.nativeOffering(nativeOfferingId), nativeOfferingDecider);
        if (native.status !== 'active') throw notFound(`native backup offering ${nativeOfferingId} does not exist`, 'externalid');
        const { state: zone } = await s.handler.load(Streams.zone(zoneId), zoneDecider);
        if (zone.status !== 'active') throw notFound(`zone ${zoneId} does not exist`, 'zoneid');
        if (repositoryId && !zone.repositories[repositoryId]) throw notFound(`backup repository ${repositoryId} is not in zone ${zone.name}`, 'repositoryid');
        if (!repositoryId && Object.keys(zone.repositories).length === 0) throw invalid(`zone ${zone.name} has no backup repository; add one with addBackupRepository`, 'zoneid');
        const offeringId = s.newId();
        const jobId = s.newId();
        const meta = { metadata: { userId: ctx.user.id } };
        await s.handler.handle(
          Streams.asyncJob(jobId),
          asyncJobDecider,
          { type: 'CreateAsyncJob', data: { jobId, command: 'importBackupOffering', userId: ctx.user.id, instanceType: 'BackupOffering', instanceId: offeringId, at: ctx.now } },
          meta,
        );
        const result = await s.handler.handle(
          Streams.backupOffering(offeringId),
          backupOfferingDecider,
          {
            type: 'RequestImport',
            data: {
              offeringId,
              jobId,
              name,
              description: params.description as string,
              zoneId,
              nativeOfferingId,
              allowUserDrivenBackups: params.allowuserdrivenbackups as boolean,
              repositoryId,
              at: ctx.now,
            },
          },
          meta,
        );
        await projected(s, result);
        return { kind: 'async', jobid: jobId };
      },
    },
    {
      name: 'listBackupOfferings',
      description: 'Lists imported backup offerings.',
      isAsync: false,
      adminOnly: false,
      responseObject: 'backupoffering',
      params: [
        { name: 'id', type: 'uuid', description: 'the id of the offering' },
        { name: 'zoneid', type: 'uuid', description: 'the zone of the offerings' },
      ],
      async handle(params) {
        const qb = offerings().createQueryBuilder('o').where(`o.removed IS NULL AND o.status = 'Active'`);
        if (params.id) qb.andWhere('o.id = :id', { id: params.id });
        if (params.zoneid) qb.andWhere('o.zone_id = :zoneId', { zoneId: params.zoneid });
        const { items, count } = await page(qb, params);
        const names = await zoneNames([...new Set(items.map((o) => o.zoneId))]);
        return {
          kind: 'list',
          name: 'backupoffering',
          items: items.map((o) => backupOfferingResponse({ ...o, zoneName: names.get(o.zoneId) ?? null })),
          count,
        };
      },
    },
    {
      name: 'deleteBackupOffering',
      description: 'Deletes an imported backup offering that no VM is assigned to.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'success',
      params: [{ name: 'id', type: 'uuid', required: true, description: 'the id of the offering' }],
      async handle(params, ctx) {
        const offeringId = params.id as string;
        // VM assignments live in the VMs' streams; the read model tells whether any VM still uses the offering.
        const assigned = await s.db.getRepository(VirtualMachineView).count({ where: { backupOfferingId: offeringId } });
        if (assigned > 0) throw inUse(`backup offering ${offeringId} is assigned to ${assigned} virtual machine(s); remove them from it first`);
        const result = await s.handler.handle(Streams.backupOffering(offeringId), backupOfferingDecider, { type: 'DeleteBackupOffering', data: { offeringId, at: ctx.now } }, {
          metadata: { userId: ctx.user.id },
        });
        await projected(s, result);
        return { kind: 'success', displaytext: `backup offering ${offeringId} deleted` };
      },
    },
    {
      name: 'listBackupProviderOfferings',
      description: "Lists the provider's offerings that can be imported into a zone (strata's native offerings).",
      isAsync: false,
      adminOnly: true,
      responseObject: 'backupoffering',
      params: [{ name: 'zoneid', type: 'uuid', required: true, description: 'the zone' }],
      async handle(params) {
        const zone = await s.db.getRepository(ZoneView).findOne({ where: { id: params.zoneid as string } });
        if (!zone || zone.removed) throw notFound(`zone ${params.zoneid} does not exist`, 'zoneid');
        const { items, count } = await page(natives().createQueryBuilder('n').where('n.removed IS NULL'), params);
        return {
          kind: 'list',
          name: 'backupoffering',
          items: items.map((n) => ({
            id: n.id,
            name: n.name,
            description: `native offering: compress=${n.compress} validate=${n.validate} quickrestore=${n.allowQuickRestore}`,
            externalid: n.id,
            provider: BACKUP_PROVIDER,
            zoneid: zone.id,
            zonename: zone.name,
          })),
          count,
        };
      },
    },
  ];
}
