import { DataSource } from 'typeorm';
import { findSetting } from '@strata/domain';

/** `configuration_values.scope_key` of a host's own values (zone values are keyed by the zone id, global ones by `global`). */
export const hostScopeKey = (hostId: string) => `host:${hostId}`;

/** The value in force: the zone's own (for zone-scoped settings), else the global one, else the default. */
export async function effectiveSetting(db: DataSource, name: string, zoneId: string | null): Promise<string> {
  const def = findSetting(name);
  if (!def) throw new Error(`unknown setting ${name}`);
  const scopes = zoneId && def.scope === 'zone' ? [zoneId, 'global'] : ['global'];
  const rows: { scope_key: string; value: string }[] = await db.query(`SELECT scope_key, value FROM configuration_values WHERE name = $1 AND scope_key = ANY($2)`, [name, scopes]);
  for (const scope of scopes) {
    const row = rows.find((r) => r.scope_key === scope);
    if (row) return row.value;
  }
  return def.defaultValue;
}
