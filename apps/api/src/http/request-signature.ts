import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { parseZonedTimestamp } from './api-date';

/**
 * CloudStack request signing (API.md, "Authentication"):
 * every parameter except `signature`, sorted by name case-sensitively, joined as `name=encode(value)`
 * with `&`, lowercased, HMAC-SHA1 with the secret key, Base64.
 *
 * The values are the decoded values the HTTP layer received; CloudStack re-encodes them with Java's
 * URLEncoder before signing, so the bytes on the wire (`+` or `%20`, `%7E` or `~`) do not matter.
 * Names are not encoded at all (CloudStack, python3-cs and CloudMonkey all agree on that).
 */

export type ValueEncoder = (value: string) => string;

/** Percent-encodes the UTF-8 bytes of every character outside `keep`. */
function percentEncoder(keep: RegExp, spaceAs: string): ValueEncoder {
  return (value) => {
    let out = '';
    for (const ch of value) {
      if (keep.test(ch)) out += ch;
      else if (ch === ' ') out += spaceAs;
      else for (const byte of Buffer.from(ch, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    }
    return out;
  };
}

/** `java.net.URLEncoder.encode(v, "UTF-8").replaceAll("\\+", "%20")`: what CloudStack itself signs. */
export const javaUrlEncode: ValueEncoder = percentEncoder(/^[A-Za-z0-9.\-*_]$/, '%20');

/**
 * python3-cs (`cs/client.py`, `cs_encode`): `urllib.parse.quote(value, safe="*")`. Python 3.7+ leaves
 * `~` unencoded, Java encodes it (`%7E`); everything else is the same as Java.
 */
export const pythonCsEncode: ValueEncoder = percentEncoder(/^[A-Za-z0-9.\-*_~]$/, '%20');

/**
 * CloudMonkey (Go): `url.QueryEscape(value)` then `+` -> `%20`. Go leaves `~` unencoded and encodes `*`
 * (`%2A`), both unlike Java.
 */
export const goQueryEscape: ValueEncoder = percentEncoder(/^[A-Za-z0-9.\-_~]$/, '%20');

/**
 * Accepted encodings, the canonical one first. They differ only for `~` and `*`, so the alternatives are
 * tried only for requests holding one of those characters; accepting them lets the real clients in
 * (CloudStack's own server is stricter and refuses their signatures on such values) without widening
 * anything: the HMAC still covers every name and value.
 */
const ALTERNATIVE_ENCODERS: readonly ValueEncoder[] = [pythonCsEncode, goQueryEscape];

/** Names compared as CloudStack does: `"signature".equalsIgnoreCase(name)`. */
const isSignatureName = (name: string) => name.toLowerCase() === 'signature';

/** Case-sensitive order by UTF-16 code units, as Java's `Collections.sort` on Strings. */
const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function buildStringToSign(params: Iterable<readonly [string, string]>, encode: ValueEncoder = javaUrlEncode): string {
  const entries = [...params].filter(([name]) => !isSignatureName(name));
  entries.sort(([a], [b]) => byCodeUnits(a, b));
  return entries
    .map(([name, value]) => `${name}=${encode(value)}`)
    .join('&')
    .toLowerCase();
}

export function hmacSha1Base64(text: string, secretKey: string): string {
  return createHmac('sha1', Buffer.from(secretKey, 'utf8')).update(text, 'utf8').digest('base64');
}

/** The signature a client sends for these parameters (used by tests and tools). */
export function signParams(params: Iterable<readonly [string, string]>, secretKey: string): string {
  return hmacSha1Base64(buildStringToSign(params), secretKey);
}

/** Equal-length digests compared with timingSafeEqual: the time taken says nothing about the expected value. */
function constantTimeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a, 'utf8').digest();
  const db = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(da, db);
}

/** The first value whose name matches case-insensitively (CloudStack reads `apiKey`, `signatureVersion`, ... so). */
export function findParamIgnoringCase(params: ReadonlyMap<string, string>, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [n, v] of params) if (n.toLowerCase() === wanted) return v;
  return undefined;
}

export type SignatureVerdict = { ok: true } | { ok: false; reason: string };

/**
 * Checks `signature` (and, for signatureVersion 3 or whenever `expires` is sent, the expiry) of a request
 * whose parameters are `params` (decoded names and values as received). `reason` is for the server log only.
 */
export function verifyRequestSignature(params: ReadonlyMap<string, string>, secretKey: string, now: Date): SignatureVerdict {
  const rawSignature = findParamIgnoringCase(params, 'signature');
  if (!rawSignature) return { ok: false, reason: 'no signature' };
  // A client that forgets to percent-encode the Base64 `+` gets it back as a space from the URL decoder.
  const given = rawSignature.replace(/ /g, '+');

  const version = findParamIgnoringCase(params, 'signatureVersion');
  const expires = findParamIgnoringCase(params, 'expires');
  if (version === '3' && expires === undefined) return { ok: false, reason: 'signatureVersion 3 without expires' };
  if (expires !== undefined) {
    const deadline = parseZonedTimestamp(expires);
    if (!deadline) return { ok: false, reason: 'unreadable expires' };
    if (now.getTime() > deadline.getTime()) return { ok: false, reason: 'expired request' };
  }

  const entries = [...params];
  if (constantTimeEqual(given, hmacSha1Base64(buildStringToSign(entries), secretKey))) return { ok: true };
  if (entries.some(([name, value]) => !isSignatureName(name) && /[~*]/.test(value))) {
    for (const encode of ALTERNATIVE_ENCODERS) {
      if (constantTimeEqual(given, hmacSha1Base64(buildStringToSign(entries, encode), secretKey))) return { ok: true };
    }
  }
  return { ok: false, reason: 'signature mismatch' };
}
