import { findSetting, invalid, normalizeSettingValue, notFound, SettingDefinition, SETTINGS, settingsDecider, Streams } from '@strata/domain';
import { ConfigurationValueView, HostView, hostScopeKey, ZoneView } from '@strata/read-models';
import { CommandDefinition, PagingParams } from '../http/command-definition';
import { ApiServices, projected } from './api-services';

const MASK = '******';

/** Where values are asked for or set: globally, in a zone, or on a host (settings with a host override). */
interface ValueScope {
  zoneId: string | null;
  hostId: string | null;
}

/**
 * `scope` as CloudStack answers it: `zone` or `host` for values asked for a zone or a host, otherwise the
 * setting's own scope (so a global listing shows which settings a zone may override); `hostoverride` marks
 * the global settings a host may override (API.md's "global (host override)").
 */
function configurationResponse(def: SettingDefinition, stored: ConfigurationValueView | undefined, { zoneId, hostId }: ValueScope) {
  // A secret is never shown: the answer only says whether one is set.
  const value = def.secret ? (stored && stored.value !== '' ? MASK : '') : (stored?.value ?? def.defaultValue);
  return {
    name: def.name,
    value,
    defaultvalue: def.secret ? '' : def.defaultValue,
    scope: hostId ? 'host' : zoneId ? 'zone' : def.scope,
    ...(zoneId && { zoneid: zoneId }),
    ...(hostId && { hostid: hostId }),
    ...(def.hostOverride && { hostoverride: true }),
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
  const knownHost = async (hostId: string) => {
    if (!(await s.db.getRepository(HostView).findOne({ where: { id: hostId } }))) throw notFound(`host ${hostId} does not exist`, 'hostid');
  };
  /** Both zoneid and hostid, an unknown zone or an unknown host: 431 naming the parameter. */
  const valueScope = async (params: Record<string, unknown>): Promise<ValueScope> => {
    const zoneId = (params.zoneid as string | undefined) ?? null;
    const hostId = (params.hostid as string | undefined) ?? null;
    if (zoneId && hostId) throw invalid('values are asked for a zone or for a host, not both: give zoneid or hostid', 'hostid');
    if (zoneId) await liveZone(zoneId);
    if (hostId) await knownHost(hostId);
    return { zoneId, hostId };
  };
  /** Effective values: a zone's (or host's) own value, else the global one, else the default. */
  const effective = async ({ zoneId, hostId }: ValueScope) => {
    const own = hostId ? hostScopeKey(hostId) : zoneId;
    const rows = await s.db.getRepository(ConfigurationValueView).find({ where: own ? [{ scopeKey: 'global' }, { scopeKey: own }] : { scopeKey: 'global' } });
    const byName = new Map<string, ConfigurationValueView>();
    for (const row of rows.filter((r) => r.scopeKey === 'global')) byName.set(row.name, row);
    for (const row of rows.filter((r) => r.scopeKey !== 'global')) byName.set(row.name, row);
    return byName;
  };

  return [
    {
      name: 'listConfigurations',
      description: 'Lists settings with their values; with zoneid (or hostid), the values in force in that zone (or on that host).',
      isAsync: false,
      adminOnly: true,
      responseObject: 'configuration',
      params: [
        { name: 'name', type: 'string', description: 'settings whose name contains this' },
        { name: 'category', type: 'string', description: 'the category (Backup, Compression, Validation, NAS, Infrastructure)' },
        { name: 'zoneid', type: 'uuid', description: 'show the zone-scoped settings as they apply in this zone' },
        { name: 'hostid', type: 'uuid', adminOnly: true, description: 'show the settings a host may override as they apply on this host' },
      ],
      async handle(params) {
        const scope = await valueScope(params);
        const { zoneId, hostId } = scope;
        const values = await effective(scope);
        const { page, pagesize, keyword } = params as unknown as PagingParams;
        const name = (params.name as string | undefined)?.toLowerCase();
        const category = (params.category as string | undefined)?.toLowerCase();
        const matching = SETTINGS.filter(
          (d) =>
            (!zoneId || d.scope === 'zone') &&
            (!hostId || d.hostOverride === true) &&
            (!name || d.name.includes(name)) &&
            (!keyword || d.name.includes(keyword.toLowerCase())) &&
            (!category || d.category.toLowerCase() === category),
        );
        const items = matching
          .slice((page - 1) * pagesize, page * pagesize)
          .map((d) => configurationResponse(d, values.get(d.name), scope));
        return { kind: 'list', name: 'configuration', items, count: matching.length };
      },
    },
    {
      name: 'updateConfiguration',
      description: 'Changes a setting, globally, for one zone (zone-scoped settings) or for one host (settings with a host override).',
      isAsync: false,
      adminOnly: true,
      responseObject: 'configuration',
      params: [
        { name: 'name', type: 'string', required: true, maxLength: 255, description: 'the name of the setting' },
        { name: 'value', type: 'string', sensitive: true, maxLength: 1024, description: 'the new value (empty resets a string setting)' },
        { name: 'zoneid', type: 'uuid', description: 'set the value for this zone only' },
        { name: 'hostid', type: 'uuid', adminOnly: true, description: 'set the value for this host only (settings with a host override)' },
      ],
      async handle(params, ctx) {
        const def = findSetting(params.name as string);
        if (!def) throw invalid(`there is no setting named ${String(params.name).slice(0, 64)}`, 'name');
        const zoneId = (params.zoneid as string | undefined) ?? null;
        const hostId = (params.hostid as string | undefined) ?? null;
        if (zoneId && hostId) throw invalid('a value is set for a zone or for a host, not both: give zoneid or hostid', 'hostid');
        if (zoneId) {
          if (def.scope !== 'zone') throw invalid(`${def.name} is a global setting and cannot be set for a zone`, 'zoneid');
          await liveZone(zoneId);
        }
        if (hostId) {
          if (!def.hostOverride) throw invalid(`${def.name} cannot be set for a host`, 'hostid');
          await knownHost(hostId);
        }
        const raw = (params.value as string | undefined) ?? '';
        if (raw === '' && def.type !== 'string') throw invalid(`value is required for ${def.name}`, 'value');
        const normalized = normalizeSettingValue(def, raw);
        const stored = def.secret && normalized !== '' ? s.secrets.encrypt(normalized) : normalized;
        const result = await s.handler.handle(
          hostId ? Streams.hostSettings(hostId) : Streams.settings(zoneId),
          settingsDecider,
          { type: 'ChangeSetting', data: { name: def.name, zoneId, hostId, value: stored, at: ctx.now, by: ctx.user.id } },
          { metadata: { userId: ctx.user.id } },
        );
        await projected(s, result);
        const values = await effective({ zoneId, hostId });
        return { kind: 'object', name: 'configuration', object: configurationResponse(def, values.get(def.name), { zoneId, hostId }) };
      },
    },
  ];
}
