import { InvalidCheckpointError } from './event-store.errors';
import { comparePositions, decodePosition, encodePosition } from './position';

describe('two-part positions', () => {
  it('round-trips', () => {
    expect(encodePosition(12n, '34')).toBe('12:34');
    expect(decodePosition('12:34')).toEqual({ major: 12n, minor: 34n });
  });

  it('compares numerically, major first, beyond 2^53', () => {
    expect(comparePositions('10:1', '9:99')).toBe(1);
    expect(comparePositions('9:99', '10:1')).toBe(-1);
    expect(comparePositions('10:9', '10:10')).toBe(-1);
    expect(comparePositions('7:7', '7:7')).toBe(0);
    expect(comparePositions('9007199254740993:0', '9007199254740992:0')).toBe(1);
    expect(comparePositions('18446744073709551615:1', '18446744073709551615:0')).toBe(1);
  });

  it.each(['', '1', '1:', ':1', '-1:2', '1:2:3', 'a:b', '1.5:2', ' 1:2'])('refuses %j', (checkpoint) => {
    expect(() => decodePosition(checkpoint)).toThrow(InvalidCheckpointError);
  });
});
