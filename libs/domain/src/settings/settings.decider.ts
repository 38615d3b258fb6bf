import { Decider, DomainEvent } from '../decider';
import { invalid } from '../domain-error';
import { findSetting } from './settings.registry';

/**
 * One stream per scope: `settings-global`, `settings-<zoneId>` and `hostSettings-<hostId>`. The value
 * arrives already normalized (normalizeSettingValue) and, for a secret setting, already encrypted by the
 * application: the domain never sees key material. `hostId` is there only for a host's own value.
 */
export type SettingChanged = DomainEvent<
  'SettingChanged',
  { name: string; scope: 'global' | 'zone' | 'host'; zoneId: string | null; hostId?: string; value: string; secret: boolean; changedAt: string; changedBy: string }
>;
export type SettingsEvent = SettingChanged;

export type SettingsCommand = {
  type: 'ChangeSetting';
  data: { name: string; zoneId: string | null; hostId?: string | null; value: string; at: Date; by: string };
};

export interface SettingsState {
  values: Record<string, string>;
}

export const settingsDecider: Decider<SettingsCommand, SettingsEvent, SettingsState> = {
  initialState: () => ({ values: {} }),

  decide(command, state) {
    const { name, zoneId, value, at, by } = command.data;
    const hostId = command.data.hostId ?? null;
    const def = findSetting(name);
    if (!def) throw invalid(`there is no setting named ${name}`, 'name');
    if (zoneId !== null && hostId !== null) throw invalid('a value is set for a zone or for a host, not both: give zoneid or hostid', 'hostid');
    if (zoneId !== null && def.scope !== 'zone') throw invalid(`${name} is a global setting and cannot be set for a zone`, 'zoneid');
    if (hostId !== null && !def.hostOverride) throw invalid(`${name} cannot be set for a host`, 'hostid');
    if (state.values[name] === value) return [];
    const scope = hostId !== null ? 'host' : zoneId !== null ? 'zone' : 'global';
    return [
      {
        type: 'SettingChanged',
        data: { name, scope, zoneId, ...(hostId !== null && { hostId }), value, secret: def.secret === true, changedAt: at.toISOString(), changedBy: by },
      },
    ];
  },

  evolve(state, event) {
    return { values: { ...state.values, [event.data.name]: event.data.value } };
  },
};
