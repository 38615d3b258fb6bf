import { deciderSpecification } from '../testing/decider-specification';
import { SettingChanged, settingsDecider } from './settings.decider';

const at = new Date('2026-11-22T10:00:00Z');
const zoneId = '6f1c1c3e-5a3a-4e0b-9a55-0c7d2c8f1a01';
const by = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c01';
const spec = deciderSpecification(settingsDecider);

const change = (name: string, value: string, z: string | null = null) => ({ type: 'ChangeSetting' as const, data: { name, zoneId: z, value, at, by } });
const changed = (name: string, value: string, z: string | null = null, secret = false): SettingChanged => ({
  type: 'SettingChanged',
  data: { name, scope: z === null ? 'global' : 'zone', zoneId: z, value, secret, changedAt: at.toISOString(), changedBy: by },
});

describe('settings decider', () => {
  it('refuses an unknown setting, naming name', () => spec.given([]).when(change('backup.chain.sizes', '4')).thenThrows('invalid', 'name'));

  it('refuses a global setting for a zone, naming zoneid', () =>
    spec.given([]).when(change('backup.compression.task.enabled', 'false', zoneId)).thenThrows('invalid', 'zoneid'));

  it('changes a global setting', () => spec.given([]).when(change('backup.compression.task.enabled', 'false')).then([changed('backup.compression.task.enabled', 'false')]));

  it('changes a zone setting globally, with global scope', () => spec.given([]).when(change('backup.chain.size', '4')).then([changed('backup.chain.size', '4')]));

  it('changes a zone setting for a zone, with zone scope', () =>
    spec.given([]).when(change('backup.chain.size', '4', zoneId)).then([changed('backup.chain.size', '4', zoneId)]));

  describe('host override', () => {
    const hostId = '3b2e1d0c-9f8e-4d7c-8b6a-5f4e3d2c1b01';
    const perHost = 'backup.compression.max.concurrent.compressions.per.host';
    const onHost = (name: string, value: string, z: string | null = null) => ({ type: 'ChangeSetting' as const, data: { name, zoneId: z, hostId, value, at, by } });

    it('sets a host-overridable setting for a host, with host scope and the host id', () =>
      spec
        .given([])
        .when(onHost(perHost, '1'))
        .then([{ type: 'SettingChanged', data: { name: perHost, scope: 'host', zoneId: null, hostId, value: '1', secret: false, changedAt: at.toISOString(), changedBy: by } }]));

    it('refuses a setting without host override for a host, naming hostid', () => spec.given([]).when(onHost('backup.compression.max.concurrent.operations', '1')).thenThrows('invalid', 'hostid'));

    it('refuses a global-only setting for a host, naming hostid', () => spec.given([]).when(onHost('backup.compression.timeout', '60')).thenThrows('invalid', 'hostid'));

    it('refuses a zone and a host at once, naming hostid', () => spec.given([]).when(onHost(perHost, '1', zoneId)).thenThrows('invalid', 'hostid'));

    it('a global change carries no host id', () => spec.given([]).when(change(perHost, '2')).then([changed(perHost, '2')]));
  });

  it('an unchanged value decides nothing', () => spec.given([changed('backup.chain.size', '4')]).when(change('backup.chain.size', '4')).thenNothingHappens());

  it('a new value after an earlier change is a change', () =>
    spec.given([changed('backup.chain.size', '4'), changed('backup.chain.size', '6')]).when(change('backup.chain.size', '4')).then([changed('backup.chain.size', '4')]));

  it('the value of one setting does not hide a change of another', () =>
    spec.given([changed('backup.chain.size', '4')]).when(change('knib.timeout', '4')).then([changed('knib.timeout', '4')]));

  it('flags a secret setting as secret', () =>
    spec
      .given([])
      .when(change('nas.backup.encryption.passphrase', 'v1:iv:tag:data', zoneId))
      .then([changed('nas.backup.encryption.passphrase', 'v1:iv:tag:data', zoneId, true)]));

  it('remembers values by name', () => {
    const state = [changed('backup.chain.size', '4'), changed('knib.timeout', '600'), changed('backup.chain.size', '2')].reduce(settingsDecider.evolve, settingsDecider.initialState());
    expect(state).toEqual({ values: { 'backup.chain.size': '2', 'knib.timeout': '600' } });
  });
});
