import { ApiError } from './api-error';
import { parseApiParams } from './api-params';
import type { ParamSpec } from './command-definition';
import { validateParams } from './param-validation';

const SPECS: ParamSpec[] = [
  { name: 'name', type: 'string', required: true, description: 'name' },
  { name: 'zoneid', type: 'uuid', description: 'zone' },
  { name: 'compress', type: 'boolean', description: 'compress' },
  { name: 'backupchainsize', type: 'integer', min: 0, max: 100, description: 'chain' },
  { name: 'capacitybytes', type: 'long', min: 0, description: 'capacity' },
  { name: 'intervaltype', type: 'enum', enum: ['HOURLY', 'DAILY', 'WEEKLY', 'MONTHLY'], description: 'interval' },
  { name: 'startdate', type: 'date', description: 'start' },
  { name: 'ids', type: 'list', itemType: 'uuid', description: 'ids' },
  { name: 'steps', type: 'list', description: 'steps', check: (v) => ((v as string[]).length > 3 ? 'at most 3 steps' : null) },
  { name: 'details', type: 'map', description: 'details' },
  { name: 'hostid', type: 'uuid', adminOnly: true, description: 'host' },
  { name: 'description', type: 'string', maxLength: 10, description: 'text' },
  { name: 'quiescevm', type: 'boolean', default: false, description: 'quiesce' },
];

const UUID = '3F2504E0-4F89-11D3-9A0C-0305E82C3301';

function validate(query: string, role: 'Admin' | 'User' = 'Admin') {
  return validateParams(parseApiParams(query), 'createThing', SPECS, role);
}

function refusal(query: string, role: 'Admin' | 'User' = 'Admin'): ApiError {
  try {
    validate(query, role);
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error(`expected ${query} to be refused`);
}

describe('validateParams', () => {
  it('converts every type', () => {
    const v = validate(
      `name=n&zoneid=${UUID}&compress=TRUE&backupchainsize=08&capacitybytes=9007199254740991&intervaltype=daily` +
        `&startdate=2026-01-02&ids=${UUID},%20${UUID.toLowerCase()},&steps=a,b&details[0].key=k&details[0].value=v`,
    );
    expect(v).toEqual({
      name: 'n',
      zoneid: UUID.toLowerCase(),
      compress: true,
      backupchainsize: 8,
      capacitybytes: 9007199254740991,
      intervaltype: 'DAILY',
      startdate: new Date('2026-01-02T00:00:00Z'),
      ids: [UUID.toLowerCase(), UUID.toLowerCase()],
      steps: ['a', 'b'],
      details: [{ key: 'k', value: 'v' }],
      quiescevm: false,
    });
  });

  it('reads Python-style booleans (str(True)) and dates with time and zone', () => {
    const v = validate('name=n&compress=False&startdate=2026-01-02%2010:11:12');
    expect(v.compress).toBe(false);
    expect(v.startdate).toEqual(new Date('2026-01-02T10:11:12Z'));
    expect(validate('name=n&startdate=2026-01-02T10:11:12%2B0100').startdate).toEqual(new Date('2026-01-02T09:11:12Z'));
  });

  it('matches parameter names case-insensitively and ignores unknown ones', () => {
    expect(validate('NAME=n&ZoneId=' + UUID + '&whatever=1&command=x')).toEqual({
      name: 'n',
      zoneid: UUID.toLowerCase(),
      quiescevm: false,
    });
  });

  it('treats an empty value as absent', () => {
    expect(validate('name=n&zoneid=').zoneid).toBeUndefined();
    expect(refusal('name=').errortext).toBe('Unable to execute API command creatething due to missing parameter name');
  });

  it('refuses a missing required parameter with 431/4350 naming it', () => {
    const e = refusal('zoneid=' + UUID);
    expect([e.errorcode, e.cserrorcode]).toEqual([431, 4350]);
    expect(e.errortext).toContain('missing parameter name');
  });

  it.each([
    ['zoneid=abc', 'zoneid', 'not a UUID'],
    ['zoneid=3F2504E0-4F89-11D3-9A0C-0305E82C330', 'zoneid', 'not a UUID'],
    ["zoneid=1'%20OR%20'1'='1", 'zoneid', 'not a UUID'],
    ['compress=yes', 'compress', 'true or false'],
    ['compress=1', 'compress', 'true or false'],
    ['backupchainsize=101', 'backupchainsize', 'between 0 and 100'],
    ['backupchainsize=-1', 'backupchainsize', 'between 0 and 100'],
    ['backupchainsize=1.5', 'backupchainsize', 'not an integer'],
    ['backupchainsize=1e3', 'backupchainsize', 'not an integer'],
    ['backupchainsize=99999999999999999999', 'backupchainsize', 'between'],
    ['capacitybytes=9007199254740992', 'capacitybytes', 'between 0 and 9007199254740991'],
    ['intervaltype=YEARLY', 'intervaltype', 'one of HOURLY, DAILY, WEEKLY, MONTHLY'],
    ['startdate=2026-02-30', 'startdate', 'not a date'],
    ['startdate=yesterday', 'startdate', 'not a date'],
    ['ids=' + UUID + ',nope', 'ids', 'item 2 ("nope"): not a UUID'],
    ['steps=a,b,c,d', 'steps', 'at most 3 steps'],
    ['details=plain', 'details', 'details[0].key=value'],
    ['description=12345678901', 'description', 'longer than 10 characters'],
    ['description=a%0Ab', 'description', 'control characters'],
    ['description=a%00b', 'description', 'control characters'],
    ['details[0].key=a%01', 'details', 'control characters'],
  ])('refuses %s with 431 naming %s', (query, name, reason) => {
    const e = refusal(`name=n&${query}`);
    expect(e.errorcode).toBe(431);
    expect(e.errortext).toContain(`Invalid parameter ${name} value=`);
    expect(e.errortext).toContain(reason);
  });

  it('applies the default maximum length of 255 to strings, counted in characters', () => {
    expect(validate(`name=${encodeURIComponent('é'.repeat(254) + '💾')}`).name).toBe('é'.repeat(254) + '💾');
    expect(refusal(`name=${'x'.repeat(256)}`).errortext).toContain('longer than 255 characters');
  });

  it('echoes at most 64 characters of a bad value, escaped', () => {
    const e = refusal(`name=n&zoneid=${'%E2%80%AE'}${'A'.repeat(500)}`);
    expect(e.errortext).toContain('\\u{202e}');
    expect(e.errortext).toContain('(501 characters)');
    expect(e.errortext.length).toBeLessThan(260);
  });

  it('refuses an Admin-only parameter from a User with 531 naming it, and takes it from an Admin', () => {
    const e = refusal(`name=n&hostid=${UUID}`, 'User');
    expect([e.errorcode, e.cserrorcode]).toEqual([531, 9999]);
    expect(e.errortext).toContain('hostid');
    expect(validate(`name=n&hostid=${UUID}`, 'Admin').hostid).toBe(UUID.toLowerCase());
    expect(validate('name=n&hostid=', 'User').hostid).toBeUndefined();
  });
});
