import { createHmac } from 'node:crypto';
import {
  buildStringToSign,
  goQueryEscape,
  javaUrlEncode,
  pythonCsEncode,
  signParams,
  verifyRequestSignature,
} from './request-signature';

// API.md, "Authentication": CloudStack's developer documentation test vector.
const VECTOR = {
  apiKey: 'plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg',
  secret: 'VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ',
  stringToSign:
    'apikey=plgwjfzk4gys3momtvmjuvg-x-jlwlnfauj9gabbbf9edm-kaymmailqzzq1elzlyq_u38zcm0bewzgudp66mg&command=listusers&response=json',
  signature: 'TTpdDq/7j/J58XCRHomKoQXEQds=',
};

const vectorParams = () =>
  new Map([
    ['apikey', VECTOR.apiKey],
    ['command', 'listUsers'],
    ['response', 'json'],
  ]);

const NOW = new Date('2026-11-22T09:55:00Z');
const hmac = (text: string, secret: string) => createHmac('sha1', secret).update(text).digest('base64');

describe('request signature', () => {
  describe('CloudStack test vector', () => {
    it('builds the documented string to sign', () => {
      expect(buildStringToSign(vectorParams())).toBe(VECTOR.stringToSign);
    });

    it('computes the documented signature', () => {
      expect(signParams(vectorParams(), VECTOR.secret)).toBe(VECTOR.signature);
    });

    it('accepts the documented request and refuses it with another secret or a changed value', () => {
      const params = vectorParams().set('signature', VECTOR.signature);
      expect(verifyRequestSignature(params, VECTOR.secret, NOW)).toEqual({ ok: true });
      expect(verifyRequestSignature(params, VECTOR.secret + 'x', NOW).ok).toBe(false);
      expect(verifyRequestSignature(new Map(params).set('command', 'listZones'), VECTOR.secret, NOW).ok).toBe(false);
    });

    it('ignores the order in which parameters arrive and the case of the name "signature"', () => {
      const params = new Map([
        ['Signature', VECTOR.signature],
        ['response', 'json'],
        ['command', 'listUsers'],
        ['apikey', VECTOR.apiKey],
      ]);
      expect(verifyRequestSignature(params, VECTOR.secret, NOW)).toEqual({ ok: true });
    });

    it('takes a signature whose "+" arrived as a space (unencoded in the query string)', () => {
      const params = new Map([['apikey', 'k'], ['command', 'listZones'], ['n', '7']]);
      let signature = signParams(params, 's');
      for (let n = 8; !signature.includes('+'); n++) signature = signParams(params.set('n', String(n)), 's');
      params.set('signature', signature.replace(/\+/g, ' '));
      expect(verifyRequestSignature(params, 's', NOW)).toEqual({ ok: true });
    });
  });

  describe('value encoding (Java URLEncoder with %20)', () => {
    it('keeps A-Z a-z 0-9 . - * _ and encodes everything else, ~ included', () => {
      // Printed by java.net.URLEncoder.encode(..., "UTF-8").replaceAll("\\+", "%20") on Java 21.
      expect(javaUrlEncode("A-Za-z0-9.-*_~ !'()+/:?&=%")).toBe('A-Za-z0-9.-*_%7E%20%21%27%28%29%2B%2F%3A%3F%26%3D%25');
    });

    it('encodes the UTF-8 bytes of non-ASCII characters, astral ones included', () => {
      expect(javaUrlEncode('ü東京')).toBe('%C3%BC%E6%9D%B1%E4%BA%AC');
      expect(javaUrlEncode('💾')).toBe('%F0%9F%92%BE');
    });

    it('encodes control characters (NUL, newline)', () => {
      expect(javaUrlEncode('a\u0000b\nc')).toBe('a%00b%0Ac');
    });

    it('matches a signature computed by Java for unicode, spaces, *, ~, NUL and shell junk', () => {
      // Computed with CloudStack's own algorithm in Java (TreeMap, URLEncoder, toLowerCase, HmacSHA1).
      const params = new Map([
        ['apiKey', 'key-1'],
        ['command', 'createZone'],
        ['name', "Zone ~one* (ü) 東京 +x\u0000;'`$(reboot)"],
        ['response', 'json'],
        ['signatureVersion', '3'],
        ['expires', '2026-11-22T10:00:00+0000'],
      ]);
      expect(buildStringToSign(params)).toBe(
        'apikey=key-1&command=createzone&expires=2026-11-22t10%3a00%3a00%2b0000' +
          '&name=zone%20%7eone*%20%28%c3%bc%29%20%e6%9d%b1%e4%ba%ac%20%2bx%00%3b%27%60%24%28reboot%29' +
          '&response=json&signatureversion=3',
      );
      expect(signParams(params, 's3cret')).toBe('KMnCXbdksxVxuqYxRgNRv5byidc=');
      params.set('signature', 'KMnCXbdksxVxuqYxRgNRv5byidc=');
      expect(verifyRequestSignature(params, 's3cret', NOW)).toEqual({ ok: true });
    });

    it('sorts names case-sensitively (uppercase first) and does not encode them', () => {
      const params = new Map([
        ['b', '1'],
        ['B', '2'],
        ['a', '3'],
        ['tags[0].key', 'x y'],
      ]);
      expect(buildStringToSign(params)).toBe('b=2&a=3&b=1&tags[0].key=x%20y');
    });
  });

  describe('client variants', () => {
    it('accepts python3-cs signatures, which leave ~ unencoded (quote(value, safe="*"))', () => {
      // Computed with cs/client.py's _sign (Python 3.12 urllib.parse.quote).
      const params = new Map([
        ['apiKey', 'key-1'],
        ['command', 'createZone'],
        ['name', 'Zone ~one* (ü) 東京 +x'],
        ['response', 'json'],
        ['signatureVersion', '3'],
        ['expires', '2026-11-22T10:00:00+0000'],
        ['signature', 'yrj8OmKWCl107cUOvfUAYQgdSPU='],
      ]);
      expect(pythonCsEncode('~*')).toBe('~*');
      expect(verifyRequestSignature(params, 's3cret', NOW)).toEqual({ ok: true });
    });

    it('accepts the python3-cs signature of a value without ~ or * (identical to Java)', () => {
      const params = new Map([
        ['apiKey', 'key-1'],
        ['command', 'createZone'],
        ['name', 'Zone one* (ü) 東京 +x'],
        ['response', 'json'],
        ['signature', '08BShjiy4LZVlusjMsa93MZd5mk='],
      ]);
      expect(verifyRequestSignature(params, 's3cret', NOW)).toEqual({ ok: true });
    });

    it('accepts CloudMonkey (Go url.QueryEscape) signatures, which encode * and leave ~', () => {
      expect(goQueryEscape('a*b~c d')).toBe('a%2Ab~c%20d');
      const text = 'apikey=k&command=listzones&keyword=a%2ab~c%20d';
      const params = new Map([
        ['apikey', 'k'],
        ['command', 'listZones'],
        ['keyword', 'a*b~c d'],
        ['signature', hmac(text, 's')],
      ]);
      expect(verifyRequestSignature(params, 's', NOW)).toEqual({ ok: true });
    });

    it('tries no alternative encoding when no value holds ~ or *', () => {
      // Same string under every encoder, so a wrong signature stays wrong.
      const params = new Map([['apikey', 'k'], ['command', 'listZones'], ['signature', hmac('apikey=k&command=listzone', 's')]]);
      expect(verifyRequestSignature(params, 's', NOW)).toEqual({ ok: false, reason: 'signature mismatch' });
    });
  });

  describe('signatureVersion 3 and expires', () => {
    const signed = (extra: Record<string, string>) => {
      const params = new Map([['apikey', 'k'], ['command', 'listZones'], ...Object.entries(extra)]);
      return params.set('signature', signParams(params, 's'));
    };

    it.each(['2026-11-22T10:00:00+0000', '2026-11-22T10:00:00+00:00', '2026-11-22T10:00:00Z', '2026-11-22T11:00:00+0100'])(
      'accepts a request before its expiry %s',
      (expires) => {
        expect(verifyRequestSignature(signed({ signatureVersion: '3', expires }), 's', NOW)).toEqual({ ok: true });
      },
    );

    it('refuses a request past its expiry', () => {
      const params = signed({ signatureVersion: '3', expires: '2026-11-22T09:54:59+0000' });
      expect(verifyRequestSignature(params, 's', NOW)).toEqual({ ok: false, reason: 'expired request' });
    });

    it('refuses signatureVersion 3 without expires', () => {
      expect(verifyRequestSignature(signed({ signatureVersion: '3' }), 's', NOW)).toEqual({
        ok: false,
        reason: 'signatureVersion 3 without expires',
      });
    });

    it.each(['2026-11-22 10:00:00', '2026-11-22T10:00:00', 'tomorrow', '2026-13-22T10:00:00+0000', '2026-02-30T10:00:00Z', ''])(
      'refuses an unreadable expires %j',
      (expires) => {
        expect(verifyRequestSignature(signed({ signatureVersion: '3', expires }), 's', NOW)).toEqual({
          ok: false,
          reason: 'unreadable expires',
        });
      },
    );

    it('honours expires even without signatureVersion, and signs both names case-sensitively', () => {
      expect(verifyRequestSignature(signed({ expires: '2026-11-22T09:00:00Z' }), 's', NOW).ok).toBe(false);
      expect(verifyRequestSignature(signed({ SignatureVersion: '3', Expires: '2026-11-22T10:00:00Z' }), 's', NOW).ok).toBe(true);
    });

    it('accepts a request without signatureVersion and expires (older clients)', () => {
      expect(verifyRequestSignature(signed({}), 's', NOW)).toEqual({ ok: true });
    });

    it('refuses a missing or empty signature', () => {
      const params = new Map([['apikey', 'k'], ['command', 'listZones']]);
      expect(verifyRequestSignature(params, 's', NOW)).toEqual({ ok: false, reason: 'no signature' });
      expect(verifyRequestSignature(params.set('signature', ''), 's', NOW)).toEqual({ ok: false, reason: 'no signature' });
    });
  });
});
