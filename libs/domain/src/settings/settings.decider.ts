import { Decider, DomainEvent } from '../decider';
import { invalid } from '../domain-error';
import { findSetting } from './settings.registry';

/**
 * One stream per scope: `settings-global` and `settings-<zoneId>`. The value arrives already normalized
 * (normalizeSettingValue) and, for a secret setting, already encrypted by the application: the domain
 * never sees key material.
 */
export type SettingChanged = DomainEvent<
  'SettingChanged',
  { name: string; scope: 'global' | 'zone'; zoneId: string | null; value: string; secret: boolean; changedAt: string; changedBy: string }
>;
export type SettingsEvent = SettingChanged;

export type SettingsCommand = {
  type: 'ChangeSetting';
  data: { name: string; zoneId: string | null; value: string; at: Date; by: string };
};

export interface SettingsState {
  values: Record<string, string>;
}

export const settingsDecider: Decider<SettingsCommand, SettingsEvent, SettingsState> = {
  initialState: () => ({ values: {} }),

  decide(command, state) {
    const { name, zoneId, value, at, by } = command.data;
    const def = findSetting(name);
    if (!def) throw invalid(`there is no setting named ${name}`, 'name');
    if (zoneId !== null && def.scope !== 'zone') throw invalid(`${name} is a global setting and cannot be set for a zone`, 'zoneid');
    if (state.values[name] === value) return [];
    return [
      {
        type: 'SettingChanged',
        data: { name, scope: zoneId === null ? 'global' : 'zone', zoneId, value, secret: def.secret === true, changedAt: at.toISOString(), changedBy: by },
      },
    ];
  },

  evolve(state, event) {
    return { values: { ...state.values, [event.data.name]: event.data.value } };
  },
};
