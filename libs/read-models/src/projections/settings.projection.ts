import { RecordedEvent } from '@strata/event-store';
import { SettingChanged } from '@strata/domain';
import { hostScopeKey } from '../settings-lookup';
import { Projection, SqlExecutor } from './projection';

export const settingsProjection: Projection = {
  name: 'settings',
  handles: ['SettingChanged'],
  async apply(recorded: RecordedEvent, sql: SqlExecutor) {
    const d = (recorded.data as SettingChanged['data']);
    await sql.query(
      `INSERT INTO configuration_values (name, scope_key, value, secret, updated) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (name, scope_key) DO UPDATE SET value = EXCLUDED.value, secret = EXCLUDED.secret, updated = EXCLUDED.updated`,
      [d.name, d.hostId ? hostScopeKey(d.hostId) : (d.zoneId ?? 'global'), d.value, d.secret, d.changedAt],
    );
  },
};
