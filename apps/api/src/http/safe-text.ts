/**
 * Client text echoed back in error sentences or written to the log: shortened, and with every
 * invisible or layout-changing character escaped, so a bad value can neither flood an answer nor forge
 * log lines nor hide itself (bidi overrides, NUL, newlines).
 */

const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cs}]/u;

export const MAX_ECHO_CHARS = 64;

export function escapeUnprintable(text: string): string {
  let out = '';
  for (const ch of text) {
    if (UNSAFE.test(ch) || ch === '\\') {
      if (ch === '\\') out += '\\\\';
      else {
        const code = ch.codePointAt(0) ?? 0;
        out += code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
      }
    } else out += ch;
  }
  return out;
}

/** At most `max` characters of `text` (counted in code points), escaped, with a note when cut. */
export function echo(text: string, max = MAX_ECHO_CHARS): string {
  const chars = [...text];
  const shown = escapeUnprintable(chars.slice(0, max).join(''));
  return chars.length > max ? `${shown}... (${chars.length} characters)` : shown;
}
