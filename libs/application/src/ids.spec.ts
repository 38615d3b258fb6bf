import { deterministicId, newId } from './ids';

const RFC_4122 = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('deterministicId', () => {
  it('is an RFC 4122 UUID string of version 5', () => {
    const id = deterministicId('job', '7c9e1a3b-5d7f-4a2c-9e4b-6d8f0a2c4e02');
    expect(id).toMatch(RFC_4122);
    expect(id[14]).toBe('5');
    expect(['8', '9', 'a', 'b']).toContain(id[19]);
  });

  it.each([[[]], [['']], [['a']], [['a', 'b', 'c']], [['ünïcødé', '秘密']], [['x'.repeat(10000)]]])('is a valid UUID for parts %j', (parts) => {
    expect(deterministicId(...parts)).toMatch(RFC_4122);
  });

  it('is valid for many different inputs (version and variant bits are always set)', () => {
    for (let i = 0; i < 500; i++) expect(deterministicId('event', String(i))).toMatch(RFC_4122);
  });

  it('is stable for the same parts', () => {
    expect(deterministicId('import', 'abc', '1')).toBe(deterministicId('import', 'abc', '1'));
  });

  it('does not change between releases (events already stored carry these ids)', () => {
    // SHA-1("a\u0000b") = 4a3dec2d1f8245280855c42db0ee4239f917fdb8; first 16 bytes, version 5 and variant bits set.
    expect(deterministicId('a', 'b')).toBe('4a3dec2d-1f82-5528-8855-c42db0ee4239');
  });

  it('differs for different parts', () => {
    expect(deterministicId('import', 'abc')).not.toBe(deterministicId('import', 'abd'));
    expect(deterministicId('import', 'abc')).not.toBe(deterministicId('release', 'abc'));
    expect(deterministicId('a')).not.toBe(deterministicId('a', ''));
  });

  it('keeps the boundaries between parts: [a, bc] and [ab, c] differ', () => {
    expect(deterministicId('a', 'bc')).not.toBe(deterministicId('ab', 'c'));
    expect(deterministicId('a', 'bc')).not.toBe(deterministicId('abc'));
  });

  it('gives no collision over many related inputs', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 1000; i++) ids.add(deterministicId('job', String(i)));
    expect(ids.size).toBe(1000);
  });
});

describe('newId', () => {
  it('is a random RFC 4122 UUID of version 4', () => {
    const id = newId();
    expect(id).toMatch(RFC_4122);
    expect(id[14]).toBe('4');
    expect(newId()).not.toBe(id);
  });
});
