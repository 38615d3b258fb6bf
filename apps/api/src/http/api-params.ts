import { ApiError } from './api-error';
import { echo } from './safe-text';

/**
 * Request parameters, read from the query string and the form-encoded body the way a servlet container
 * reads them for CloudStack (`+` is a space, `%XX` are UTF-8 bytes), but strictly: broken encodings and
 * conflicting duplicates are refused instead of being silently dropped.
 */

export const PARAM_LIMITS = {
  /** more than this is an attack or a bug, not a CloudStack client */
  maxParams: 1000,
  maxNameLength: 200,
  /** indexes of `name[i].key` beyond this are refused rather than iterated */
  maxMapIndex: 9999,
} as const;

export interface ApiParams {
  /** decoded names (as sent) and values, for the signature; a name repeated with the same value appears once */
  readonly raw: ReadonlyMap<string, string>;
  /** plain parameters by lowercased name */
  readonly byName: ReadonlyMap<string, string>;
  /** `name[i].key=value` parameters by lowercased `name`, in index order, keys lowercased */
  readonly maps: ReadonlyMap<string, Record<string, string>[]>;
  /** a plain parameter, case-insensitively */
  get(name: string): string | undefined;
}

const MAP_NAME = /^(.+)\[(\d{1,9})\]\.(.+)$/;
// ignoreBOM: a value that starts with U+FEFF must reach the signature check unchanged.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const HEX: Record<string, number> = {};
for (let i = 0; i < 16; i++) {
  HEX[i.toString(16)] = i;
  HEX[i.toString(16).toUpperCase()] = i;
}

/** Decodes one `application/x-www-form-urlencoded` component; null when the encoding is broken. */
export function decodeFormComponent(bytes: Buffer): string | null {
  const out = Buffer.allocUnsafe(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x2b /* + */) out[n++] = 0x20;
    else if (b === 0x25 /* % */) {
      const hi = HEX[String.fromCharCode(bytes[i + 1] ?? 0)];
      const lo = HEX[String.fromCharCode(bytes[i + 2] ?? 0)];
      if (hi === undefined || lo === undefined) return null;
      out[n++] = hi * 16 + lo;
      i += 2;
    } else out[n++] = b;
  }
  try {
    return utf8.decode(out.subarray(0, n));
  } catch {
    return null;
  }
}

class ParamsBuilder {
  readonly raw = new Map<string, string>();
  readonly byName = new Map<string, string>();
  /** lowercased map name -> index -> lowercased key -> value */
  private readonly mapEntries = new Map<string, Map<number, Record<string, string>>>();
  private count = 0;

  add(name: string, value: string): void {
    if (++this.count > PARAM_LIMITS.maxParams) {
      throw ApiError.paramError(`too many parameters: strata accepts at most ${PARAM_LIMITS.maxParams} in one request`);
    }
    if (name === '') throw ApiError.malformed('a parameter without a name was sent (e.g. "=value" or "&=&")');
    if (name.length > PARAM_LIMITS.maxNameLength) {
      throw ApiError.malformed(`a parameter name is longer than ${PARAM_LIMITS.maxNameLength} characters: "${echo(name)}"`);
    }
    const previous = this.raw.get(name);
    if (previous !== undefined) {
      if (previous !== value) throw conflicting(name);
      return; // the same pair twice: harmless, and signed once as CloudStack does
    }

    const mapped = MAP_NAME.exec(name);
    if (mapped) this.addMapEntry(name, mapped[1].toLowerCase(), Number(mapped[2]), mapped[3].toLowerCase(), value);
    else {
      const key = name.toLowerCase();
      const seen = this.byName.get(key);
      if (seen !== undefined && seen !== value) throw conflicting(name);
      this.byName.set(key, value);
    }
    this.raw.set(name, value);
  }

  private addMapEntry(name: string, base: string, index: number, key: string, value: string): void {
    if (index > PARAM_LIMITS.maxMapIndex) {
      throw ApiError.malformed(`the index of parameter "${echo(name)}" is above ${PARAM_LIMITS.maxMapIndex}`);
    }
    let byIndex = this.mapEntries.get(base);
    if (!byIndex) this.mapEntries.set(base, (byIndex = new Map()));
    let entry = byIndex.get(index);
    // No prototype: a key named `__proto__` must stay an ordinary key.
    if (!entry) byIndex.set(index, (entry = Object.create(null) as Record<string, string>));
    if (Object.prototype.hasOwnProperty.call(entry, key) && entry[key] !== value) throw conflicting(name);
    entry[key] = value;
  }

  build(): ApiParams {
    const maps = new Map<string, Record<string, string>[]>();
    for (const [base, byIndex] of this.mapEntries) {
      maps.set(
        base,
        [...byIndex.entries()].sort(([a], [b]) => a - b).map(([, entry]) => entry),
      );
    }
    const byName = this.byName;
    return { raw: this.raw, byName, maps, get: (name) => byName.get(name.toLowerCase()) };
  }
}

function conflicting(name: string): ApiError {
  return ApiError.paramError(`parameter ${echo(name)} is given more than once with different values`);
}

function addEncoded(builder: ParamsBuilder, encoded: Buffer): void {
  let start = 0;
  while (start <= encoded.length) {
    let end = encoded.indexOf(0x26 /* & */, start);
    if (end < 0) end = encoded.length;
    const segment = encoded.subarray(start, end);
    start = end + 1;
    if (segment.length === 0) continue; // `a=1&&b=2` and a trailing `&` are common and harmless
    const eq = segment.indexOf(0x3d /* = */);
    const name = decodeFormComponent(eq < 0 ? segment : segment.subarray(0, eq));
    const value = eq < 0 ? '' : decodeFormComponent(segment.subarray(eq + 1));
    if (name === null || value === null) {
      const shown = echo(segment.toString('latin1'));
      throw ApiError.malformed(`malformed percent-encoding or invalid UTF-8 in parameter "${shown}"`);
    }
    builder.add(name, value);
  }
}

/**
 * Parameters of one request: `query` is the raw query string (without `?`), `body` the raw
 * form-encoded body of a POST. Throws ApiError 430/431.
 */
export function parseApiParams(query: string, body?: Buffer): ApiParams {
  const builder = new ParamsBuilder();
  // The HTTP parser only lets ASCII through in a request line, so latin1 gives back the exact bytes.
  addEncoded(builder, Buffer.from(query, 'latin1'));
  if (body && body.length > 0) addEncoded(builder, body);
  return builder.build();
}
