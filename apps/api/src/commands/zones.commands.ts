import { Streams, zoneDecider } from '@strata/domain';
import { HostView, ZoneView } from '@strata/read-models';
import { inUse, invalid } from '@strata/domain';
import { CommandDefinition } from '../http/command-definition';
import { ApiServices, page, projected } from './api-services';

const zoneResponse = (z: { id: string; name: string }) => ({ id: z.id, name: z.name });

export function zoneCommands(s: ApiServices): CommandDefinition[] {
  return [
    {
      name: 'createZone',
      description: 'Creates a zone: the scope of hosts, backup repositories and zone settings.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'zone',
      params: [{ name: 'name', type: 'string', required: true, maxLength: 255, description: 'the name of the zone' }],
      async handle(params, ctx) {
        const name = (params.name as string).trim();
        if (name === '') throw invalid('name must not be empty', 'name');
        // Zone names are unique among live zones; checked against the read model (admin-only, rare).
        const taken = await s.db.getRepository(ZoneView).createQueryBuilder('z').where('lower(z.name) = lower(:name) AND z.removed IS NULL', { name }).getCount();
        if (taken > 0) throw invalid(`a zone named ${name} already exists`, 'name');
        const zoneId = s.newId();
        const result = await s.handler.handle(Streams.zone(zoneId), zoneDecider, { type: 'CreateZone', data: { zoneId, name, at: ctx.now } }, { metadata: { userId: ctx.user.id } });
        await projected(s, result);
        return { kind: 'object', name: 'zone', object: zoneResponse({ id: zoneId, name }) };
      },
    },
    {
      name: 'listZones',
      description: 'Lists zones.',
      isAsync: false,
      adminOnly: false,
      responseObject: 'zone',
      params: [
        { name: 'id', type: 'uuid', description: 'the id of the zone' },
        { name: 'name', type: 'string', description: 'the name of the zone' },
      ],
      async handle(params) {
        const qb = s.db.getRepository(ZoneView).createQueryBuilder('z').where('z.removed IS NULL');
        if (params.id) qb.andWhere('z.id = :id', { id: params.id });
        if (params.name) qb.andWhere('z.name = :name', { name: params.name });
        const { items, count } = await page(qb, params);
        return { kind: 'list', name: 'zone', items: items.map(zoneResponse), count };
      },
    },
    {
      name: 'deleteZone',
      description: 'Deletes a zone that has no hosts and no backup repositories.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'success',
      params: [{ name: 'id', type: 'uuid', required: true, description: 'the id of the zone' }],
      async handle(params, ctx) {
        const zoneId = params.id as string;
        const hosts = await s.db.getRepository(HostView).count({ where: { zoneId } });
        if (hosts > 0) throw inUse(`zone ${zoneId} still has ${hosts} host(s)`);
        const result = await s.handler.handle(Streams.zone(zoneId), zoneDecider, { type: 'DeleteZone', data: { zoneId, at: ctx.now } }, { metadata: { userId: ctx.user.id } });
        await projected(s, result);
        return { kind: 'success', displaytext: `zone ${zoneId} deleted` };
      },
    },
  ];
}
