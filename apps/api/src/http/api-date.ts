import { formatCloudStackDate } from '@strata/application';

/**
 * Dates on the wire. CloudStack writes `yyyy-MM-dd'T'HH:mm:ssZ` (Java's `Z`: `+0000`); strata always
 * answers in UTC. Clients send `expires` in that form too, but Python's `%z`, ISO-8601 tools and
 * CloudMonkey differ slightly, so `+00:00` and `Z` are read as well.
 */


/** One formatter for every CloudStack date strata writes (answers and async job results). */
export const formatApiDate: (d: Date) => string = formatCloudStackDate;

const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$/;
const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Builds the instant, or null when a field is out of range (Date.UTC would silently roll 2026-02-31 over). */
function instant(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number, offsetMin: number): Date | null {
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return null;
  const daysInMonth = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  if (d > daysInMonth) return null;
  const t = Date.UTC(y, mo - 1, d, h, mi, s, ms) - offsetMin * 60_000;
  return Number.isFinite(t) ? new Date(t) : null;
}

function offsetMinutes(zone: string | undefined): number | null {
  if (zone === undefined || zone === 'Z') return 0;
  const m = /^([+-])(\d{2}):?(\d{2})$/.exec(zone);
  if (!m) return null;
  const h = Number(m[2]);
  const mi = Number(m[3]);
  if (h > 23 || mi > 59) return null;
  return (m[1] === '-' ? -1 : 1) * (h * 60 + mi);
}

/**
 * A timestamp with an explicit zone (`2026-11-22T10:00:00+0000`, `+00:00`, `Z`), as `expires` needs:
 * without a zone the instant would depend on the server's clock setting.
 */
export function parseZonedTimestamp(text: string): Date | null {
  const m = TIMESTAMP.exec(text);
  if (!m || m[8] === undefined || !text.includes('T')) return null;
  const offset = offsetMinutes(m[8]);
  if (offset === null) return null;
  const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  return instant(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], ms, offset);
}

/** A date parameter: `yyyy-MM-dd`, `yyyy-MM-dd HH:mm:ss`, or the zoned forms; UTC when no zone is given. */
export function parseDateParam(text: string): Date | null {
  const day = DAY.exec(text);
  if (day) return instant(+day[1], +day[2], +day[3], 0, 0, 0, 0, 0);
  const m = TIMESTAMP.exec(text);
  if (!m) return null;
  const offset = offsetMinutes(m[8]);
  if (offset === null) return null;
  const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  return instant(+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], ms, offset);
}
