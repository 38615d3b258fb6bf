import { ApiError } from './api-error';
import { PARAM_LIMITS, decodeFormComponent, parseApiParams } from './api-params';

function refusal(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected an ApiError');
}

describe('parseApiParams', () => {
  it('decodes + and %XX (UTF-8) in names and values, keeping the names as sent', () => {
    const p = parseApiParams('command=listZones&Name=a+b%20c&%C3%BC=%E6%9D%B1%E4%BA%AC&apiKey=K');
    expect([...p.raw]).toEqual([
      ['command', 'listZones'],
      ['Name', 'a b c'],
      ['ü', '東京'],
      ['apiKey', 'K'],
    ]);
    expect(p.get('name')).toBe('a b c');
    expect(p.get('APIKEY')).toBe('K');
  });

  it('merges the query and a form body', () => {
    const p = parseApiParams('command=createZone', Buffer.from('name=z%201&response=json'));
    expect(p.get('command')).toBe('createZone');
    expect(p.get('name')).toBe('z 1');
    expect(p.raw.size).toBe(3);
  });

  it('reads a name without = as an empty value and skips empty segments', () => {
    const p = parseApiParams('&&a&b=&c=1&');
    expect([...p.raw]).toEqual([
      ['a', ''],
      ['b', ''],
      ['c', '1'],
    ]);
  });

  it('keeps = inside values', () => {
    expect(parseApiParams('signature=abc%3D%3D&x=a=b').get('x')).toBe('a=b');
  });

  it('turns name[i].key=value into arrays of records in index order, keys lowercased', () => {
    const p = parseApiParams('tags[1].key=k2&tags[1].value=v2&Tags[0].Key=k1&tags[0].value=v1&details[0].x=1');
    expect(p.maps.get('tags')).toEqual([
      { key: 'k1', value: 'v1' },
      { key: 'k2', value: 'v2' },
    ]);
    expect(p.maps.get('details')).toEqual([{ x: '1' }]);
    expect(p.raw.get('Tags[0].Key')).toBe('k1');
    expect(p.get('tags')).toBeUndefined();
  });

  it('keeps __proto__ an ordinary map key', () => {
    const p = parseApiParams('m[0].__proto__=x');
    const entry = p.maps.get('m')?.[0] as Record<string, string>;
    expect(Object.keys(entry)).toEqual(['__proto__']);
    expect(entry.__proto__).toBe('x');
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('accepts the same pair twice and signs it once', () => {
    const p = parseApiParams('a=1&a=1', Buffer.from('a=1'));
    expect([...p.raw]).toEqual([['a', '1']]);
  });

  it('keeps case variants of one name with the same value as separate signed names', () => {
    const p = parseApiParams('zoneid=1&ZoneId=1');
    expect(p.raw.size).toBe(2);
    expect(p.get('zoneid')).toBe('1');
  });

  it.each([
    ['a=1&a=2', 'a'],
    ['zoneid=1&ZONEID=2', 'ZONEID'],
    ['t[0].key=1&T[0].KEY=2', 'T[0].KEY'],
  ])('refuses %s: a name repeated with different values', (query, name) => {
    const e = refusal(() => parseApiParams(query));
    expect(e.errorcode).toBe(431);
    expect(e.errortext).toContain(name);
    expect(e.errortext).toContain('different values');
  });

  it('refuses a duplicate across query and body', () => {
    expect(refusal(() => parseApiParams('a=1', Buffer.from('a=2'))).errorcode).toBe(431);
  });

  it.each(['a=%zz', 'a=%4', 'a=%', '%G1=1', 'a=%C3%28', 'a=%ED%A0%80', 'a=%FF'])('refuses broken encoding %s with 430', (query) => {
    const e = refusal(() => parseApiParams(query));
    expect(e.errorcode).toBe(430);
    expect(e.cserrorcode).toBe(4350);
  });

  it('refuses raw non-UTF-8 bytes in a body', () => {
    expect(refusal(() => parseApiParams('', Buffer.from([0x61, 0x3d, 0xff]))).errorcode).toBe(430);
  });

  it('refuses an empty name', () => {
    expect(refusal(() => parseApiParams('=x')).errortext).toContain('without a name');
  });

  it('refuses too many parameters and overlong names', () => {
    const many = Array.from({ length: PARAM_LIMITS.maxParams + 1 }, (_, i) => `p${i}=1`).join('&');
    expect(refusal(() => parseApiParams(many)).errorcode).toBe(431);
    expect(refusal(() => parseApiParams(`${'n'.repeat(PARAM_LIMITS.maxNameLength + 1)}=1`)).errorcode).toBe(430);
    expect(refusal(() => parseApiParams('m[99999].k=1')).errorcode).toBe(430);
  });

  it('never echoes more than a short, escaped part of a bad value', () => {
    const e = refusal(() => parseApiParams(`a=${'x'.repeat(5000)}%zz`));
    expect(e.errortext.length).toBeLessThan(200);
    const nul = refusal(() => parseApiParams('a%00b=1&a%00b=2'));
    expect(nul.errortext).toContain('a\\x00b');
    expect(nul.errortext).not.toContain('\u0000');
  });
});

describe('decodeFormComponent', () => {
  it('decodes NUL and astral characters', () => {
    expect(decodeFormComponent(Buffer.from('%00%F0%9F%92%BE'))).toBe('\u0000💾');
  });
});
