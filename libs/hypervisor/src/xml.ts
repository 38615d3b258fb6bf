import { XmlParseError } from './errors';

/**
 * A small, safe XML reader for the documents libvirt gives us (domain, checkpoint and backup XML):
 * elements, attributes, text, CDATA, comments and processing instructions. No DTD, so no external
 * entities and no entity expansion attacks: a `<!DOCTYPE` is refused, and only the five predefined
 * entities and character references are decoded. Namespace prefixes are kept as part of names
 * (`qemu:override`).
 */

export interface XmlElement {
  readonly name: string;
  /** Attribute values, decoded. A null-prototype object: `__proto__` is just another name. */
  readonly attributes: Readonly<Record<string, string>>;
  readonly children: readonly XmlElement[];
  /** The element's own text (text and CDATA directly inside it, concatenated, not trimmed). */
  readonly text: string;
}

export interface XmlParseOptions {
  /** Refuse documents longer than this many characters. Default 32 Mi. */
  maxLength?: number;
  /** Refuse nesting deeper than this. Default 256. */
  maxDepth?: number;
}

interface MutableElement {
  name: string;
  attributes: Record<string, string>;
  children: MutableElement[];
  text: string;
}

const NAME_START = /[A-Za-z_:]/;
const NAME_CHAR = /[A-Za-z0-9_:.-]/;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeEntities(raw: string, at: number): string {
  if (!raw.includes('&')) return raw;
  return raw.replace(/&([^;&\s]{0,12});?/g, (whole, ref: string, offset: number) => {
    if (!whole.endsWith(';')) throw new XmlParseError(`unterminated entity reference "${whole}"`, at + offset);
    if (ref.startsWith('#x') || ref.startsWith('#X')) {
      const code = /^[0-9a-fA-F]+$/.test(ref.slice(2)) ? parseInt(ref.slice(2), 16) : NaN;
      return fromCodePoint(code, whole, at + offset);
    }
    if (ref.startsWith('#')) {
      const code = /^[0-9]+$/.test(ref.slice(1)) ? parseInt(ref.slice(1), 10) : NaN;
      return fromCodePoint(code, whole, at + offset);
    }
    const v = Object.prototype.hasOwnProperty.call(PREDEFINED, ref) ? PREDEFINED[ref] : undefined;
    if (v === undefined) throw new XmlParseError(`unknown entity "${whole}"`, at + offset);
    return v;
  });
}

function fromCodePoint(code: number, whole: string, at: number): string {
  if (!Number.isInteger(code) || code <= 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
    throw new XmlParseError(`bad character reference "${whole}"`, at);
  }
  return String.fromCodePoint(code);
}

export function parseXml(xml: string, options: XmlParseOptions = {}): XmlElement {
  const maxLength = options.maxLength ?? 32 * 1024 * 1024;
  const maxDepth = options.maxDepth ?? 256;
  if (xml.length > maxLength) throw new XmlParseError(`document longer than ${maxLength} characters`, 0);
  let pos = xml.charCodeAt(0) === 0xfeff ? 1 : 0;
  const stack: MutableElement[] = [];
  let root: MutableElement | undefined;

  const fail = (message: string, at = pos): never => {
    throw new XmlParseError(message, at);
  };
  const expectAfter = (token: string, from: number, what: string): number => {
    const end = xml.indexOf(token, from);
    if (end < 0) fail(`unterminated ${what}`, from);
    return end;
  };
  const readName = (): string => {
    const start = pos;
    if (pos >= xml.length || !NAME_START.test(xml[pos])) fail('expected a name');
    pos++;
    while (pos < xml.length && NAME_CHAR.test(xml[pos])) pos++;
    return xml.slice(start, pos);
  };
  const skipSpace = () => {
    while (pos < xml.length && /\s/.test(xml[pos])) pos++;
  };

  while (pos < xml.length) {
    const lt = xml.indexOf('<', pos);
    const textEnd = lt < 0 ? xml.length : lt;
    if (textEnd > pos) {
      const raw = xml.slice(pos, textEnd);
      if (stack.length > 0) stack[stack.length - 1].text += decodeEntities(raw, pos);
      else if (raw.trim() !== '') fail('text outside the root element');
      pos = textEnd;
      continue;
    }
    // at '<'
    if (xml.startsWith('<!--', pos)) {
      pos = expectAfter('-->', pos + 4, 'comment') + 3;
    } else if (xml.startsWith('<![CDATA[', pos)) {
      if (stack.length === 0) fail('CDATA outside the root element');
      const end = expectAfter(']]>', pos + 9, 'CDATA section');
      stack[stack.length - 1].text += xml.slice(pos + 9, end);
      pos = end + 3;
    } else if (xml.startsWith('<?', pos)) {
      pos = expectAfter('?>', pos + 2, 'processing instruction') + 2;
    } else if (xml.startsWith('<!', pos)) {
      fail('DOCTYPE and other declarations are not accepted');
    } else if (xml.startsWith('</', pos)) {
      pos += 2;
      const name = readName();
      skipSpace();
      if (xml[pos] !== '>') fail(`expected ">" to close </${name}`);
      pos++;
      const open = stack.pop();
      if (!open || open.name !== name) fail(`unexpected </${name}>${open ? ` (open element is <${open.name}>)` : ''}`);
    } else {
      const start = pos;
      pos++;
      const name = readName();
      const attributes: Record<string, string> = Object.create(null) as Record<string, string>;
      let selfClosing = false;
      for (;;) {
        const before = pos;
        skipSpace();
        if (pos >= xml.length) fail(`unterminated <${name}>`, start);
        if (xml[pos] === '>') {
          pos++;
          break;
        }
        if (xml.startsWith('/>', pos)) {
          pos += 2;
          selfClosing = true;
          break;
        }
        if (pos === before) fail(`expected whitespace before an attribute of <${name}>`);
        const attr = readName();
        skipSpace();
        if (xml[pos] !== '=') fail(`expected "=" after attribute ${attr}`);
        pos++;
        skipSpace();
        const quote = xml[pos];
        if (quote !== '"' && quote !== "'") fail(`expected a quoted value for attribute ${attr}`);
        const end = expectAfter(quote, pos + 1, `value of attribute ${attr}`);
        const raw = xml.slice(pos + 1, end);
        if (raw.includes('<')) fail(`"<" in the value of attribute ${attr}`, pos + 1);
        if (Object.prototype.hasOwnProperty.call(attributes, attr)) fail(`duplicate attribute ${attr}`);
        attributes[attr] = decodeEntities(raw, pos + 1);
        pos = end + 1;
      }
      const el: MutableElement = { name, attributes, children: [], text: '' };
      if (stack.length > 0) stack[stack.length - 1].children.push(el);
      else if (root) fail('more than one root element', start);
      else root = el;
      if (!selfClosing) {
        if (stack.length >= maxDepth) fail(`nesting deeper than ${maxDepth}`, start);
        stack.push(el);
      }
    }
  }
  if (stack.length > 0) fail(`unclosed <${stack[stack.length - 1].name}>`);
  if (!root) fail('no root element', 0);
  return root as XmlElement;
}

/** Escapes text for an XML attribute value or text node. */
export function xmlEscape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

export function childElement(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

export function childElements(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

/** Follows a path of child names (`['devices', 'disk']`), first match at each step. */
export function descend(el: XmlElement, path: readonly string[]): XmlElement | undefined {
  let cur: XmlElement | undefined = el;
  for (const name of path) {
    if (!cur) return undefined;
    cur = childElement(cur, name);
  }
  return cur;
}

export function attribute(el: XmlElement | undefined, name: string): string | null {
  if (!el) return null;
  return Object.prototype.hasOwnProperty.call(el.attributes, name) ? el.attributes[name] : null;
}

/** Trimmed text of the first child with that name, or null. */
export function childText(el: XmlElement, name: string): string | null {
  const c = childElement(el, name);
  return c ? c.text.trim() : null;
}
