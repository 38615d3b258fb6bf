import { findSetting, invalid, normalizeSettingValue, notFound, SettingDefinition, SETTINGS, settingsDecider, Streams } from '@strata/domain';
import { ConfigurationValueView, ZoneView } from '@strata/read-models';
import { CommandDefinition, PagingParams } from '../http/command-definition';
import { ApiServices, projected } from './api-services';

const MASK = '******';

/**
 * `scope` as CloudStack answers it: `zone` for values asked for a zone, otherwise the setting's own scope
 * (so a global listing shows which settings a zone may override).
 */
function configurationResponse(def: SettingDefinition, stored: ConfigurationValueView | undefined, zoneId: string | null) {
  // A secret is never shown: the answer only says whether one is set.
  const value = def.secret ? (stored && stored.value !== '' ? MASK : '') : (stored?.value ?? def.defaultValue);
  return {
    name: def.name,
    value,
    defaultvalue: def.secret ? '' : def.defaultValue,
    scope: zoneId ? 'zone' : def.scope,
    ...(zoneId && { zoneid: zoneId }),
    category: def.category,
    description: def.description,
    isdynamic: def.isDynamic,
    type: def.type === 'number' ? 'Float' : def.type === 'integer' ? 'Integer' : def.type === 'boolean' ? 'Boolean' : 'String',
  };
}

export function configurationCommands(s: ApiServices): CommandDefinition[] {
  const liveZone = async (zoneId: string) => {
    const zone = await s.db.getRepository(ZoneView).findOne({ where: { id: zoneId } });
    if (!zone || zone.removed) throw notFound(`zone ${zoneId} does not exist`, 'zoneid');
  };
  /** Effective values: a zone's own value, else the global one, else the default. */
  const effective = async (zoneId: string | null) => {
    const rows = await s.db.getRepository(ConfigurationValueView).find({ where: zoneId ? [{ scopeKey: 'global' }, { scopeKey: zoneId }] : { scopeKey: 'global' } });
    const byName = new Map<string, ConfigurationValueView>();
    for (const row of rows.filter((r) => r.scopeKey === 'global')) byName.set(row.name, row);
    for (const row of rows.filter((r) => r.scopeKey !== 'global')) byName.set(row.name, row);
    return byName;
  };

  return [
    {
      name: 'listConfigurations',
      description: 'Lists settings with their values; with zoneid, the values in force in that zone.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'configuration',
      params: [
        { name: 'name', type: 'string', description: 'settings whose name contains this' },
        { name: 'category', type: 'string', description: 'the category (Backup, Compression, Validation, NAS, Infrastructure)' },
        { name: 'zoneid', type: 'uuid', description: 'show the zone-scoped settings as they apply in this zone' },
      ],
      async handle(params) {
        const zoneId = (params.zoneid as string | undefined) ?? null;
        if (zoneId) await liveZone(zoneId);
        const values = await effective(zoneId);
        const { page, pagesize, keyword } = params as unknown as PagingParams;
        const name = (params.name as string | undefined)?.toLowerCase();
        const category = (params.category as string | undefined)?.toLowerCase();
        const matching = SETTINGS.filter(
          (d) =>
            (!zoneId || d.scope === 'zone') &&
            (!name || d.name.includes(name)) &&
            (!keyword || d.name.includes(keyword.toLowerCase())) &&
            (!category || d.category.toLowerCase() === category),
        );
        const items = matching
          .slice((page - 1) * pagesize, page * pagesize)
          .map((d) => configurationResponse(d, values.get(d.name), zoneId));
        return { kind: 'list', name: 'configuration', items, count: matching.length };
      },
    },
    {
      name: 'updateConfiguration',
      description: 'Changes a setting, globally or (for zone-scoped settings) for one zone.',
      isAsync: false,
      adminOnly: true,
      responseObject: 'configuration',
      params: [
        { name: 'name', type: 'string', required: true, maxLength: 255, description: 'the name of the setting' },
        { name: 'value', type: 'string', sensitive: true, maxLength: 1024, description: 'the new value (empty resets a string setting)' },
        { name: 'zoneid', type: 'uuid', description: 'set the value for this zone only' },
      ],
      async handle(params, ctx) {
        const def = findSetting(params.name as string);
        if (!def) throw invalid(`there is no setting named ${String(params.name).slice(0, 64)}`, 'name');
        const zoneId = (params.zoneid as string | undefined) ?? null;
        if (zoneId) {
          if (def.scope !== 'zone') throw invalid(`${def.name} is a global setting and cannot be set for a zone`, 'zoneid');
          await liveZone(zoneId);
        }
        const raw = (params.value as string | undefined) ?? '';
        if (raw === '' && def.type !== 'string') throw invalid(`value is required for ${def.name}`, 'value');
        const normalized = normalizeSettingValue(def, raw);
        const stored = def.secret && normalized !== '' ? s.secrets.encrypt(normalized) : normalized;
        const result = await s.handler.handle(
          Streams.settings(zoneId),
          settingsDecider,
          { type: 'ChangeSetting', data: { name: def.name, zoneId, value: stored, at: ctx.now, by: ctx.user.id } },
          { metadata: { userId: ctx.user.id } },
        );
        await projected(s, result);
        const values = await effective(zoneId);
        return { kind: 'object', name: 'configuration', object: configurationResponse(def, values.get(def.name), zoneId) };
      },
    },
  ];
}
