/**
 * SOAP envelopes for vim25, built and read with fast-xml-parser. Values are always element
 * text or attributes handed to the builder (which escapes them), never spliced into strings.
 */
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

export type XmlValue = string | XmlObject | XmlValue[];
export interface XmlObject {
  [key: string]: XmlValue;
}

/** A managed object reference: <_this type="HostSystem">host-21</_this>. */
export interface MoRef {
  type: string;
  value: string;
}

/** What the builder accepts: objects in schema order (vSphere validates element order). */
export type XmlInput = string | number | boolean | XmlInputObject | XmlInput[] | undefined;
export interface XmlInputObject {
  [key: string]: XmlInput;
}

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  textNodeName: '#text',
  suppressEmptyNode: false,
  format: false,
  processEntities: true,
});

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  textNodeName: '#text',
  // Numbers stay strings: WWNs are signed 64-bit longs and would lose precision as JS numbers.
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  // Tag prefixes (soapenv:, soap:) vary between servers; attribute prefixes are kept because
  // a property value can carry both xsi:type and a moref's own type attribute.
  transformTagName: (name) => name.replace(/^[^:]+:/, ''),
});

/** A moref as builder input. */
export function ref(r: MoRef): XmlInputObject {
  return { '@_type': r.type, '#text': r.value };
}

/** An element with an explicit xsi:type (polymorphic spec members). */
export function typed(xsiType: string, body: XmlInputObject): XmlInputObject {
  return { '@_xsi:type': xsiType, ...body };
}

export function envelope(method: string, params: XmlInputObject): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    builder.build({
      'soapenv:Envelope': {
        '@_xmlns:soapenv': 'http://schemas.xmlsoap.org/soap/envelope/',
        '@_xmlns:xsd': 'http://www.w3.org/2001/XMLSchema',
        '@_xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance',
        'soapenv:Body': { [method]: { '@_xmlns': 'urn:vim25', ...params } },
      },
    })
  );
}

export function parseXml(text: string): XmlObject {
  const out: unknown = parser.parse(text);
  if (!out || typeof out !== 'object' || Array.isArray(out)) throw new Error('not an XML document');
  return out as XmlObject;
}

export function isObject(v: XmlValue | undefined): v is XmlObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Repeated elements parse as arrays, single ones as values: always get a list. */
export function list(v: XmlValue | undefined): XmlValue[] {
  if (v === undefined || v === '') return [];
  return Array.isArray(v) ? v : [v];
}

/** First child element of that name. */
export function child(v: XmlValue | undefined, name: string): XmlValue | undefined {
  if (Array.isArray(v)) v = v[0];
  if (!isObject(v)) return undefined;
  const c = v[name];
  return Array.isArray(c) ? c[0] : c;
}

export function children(v: XmlValue | undefined, name: string): XmlValue[] {
  if (Array.isArray(v)) v = v[0];
  if (!isObject(v)) return [];
  return list(v[name]);
}

/** Follow a dotted path of first children: path(host, 'summary.hardware.memorySize'). */
export function path(v: XmlValue | undefined, dotted: string): XmlValue | undefined {
  let cur = v;
  for (const part of dotted.split('.')) {
    cur = child(cur, part);
    if (cur === undefined) return undefined;
  }
  return cur;
}

export function text(v: XmlValue | undefined): string {
  if (Array.isArray(v)) v = v[0];
  if (v === undefined || Array.isArray(v)) return '';
  if (typeof v === 'string') return v;
  const t = v['#text'];
  return typeof t === 'string' ? t : '';
}

export function optText(v: XmlValue | undefined): string | undefined {
  const t = text(v);
  return t === '' ? undefined : t;
}

export function num(v: XmlValue | undefined, fallback = 0): number {
  const t = text(v);
  if (t === '') return fallback;
  const n = Number(t);
  return Number.isFinite(n) ? n : fallback;
}

export function bool(v: XmlValue | undefined): boolean | undefined {
  const t = text(v);
  if (t === 'true' || t === '1') return true;
  if (t === 'false' || t === '0') return false;
  return undefined;
}

/** xsi:type of an element, whatever the prefix bound to the XMLSchema-instance namespace. */
export function xsiType(v: XmlValue | undefined): string | undefined {
  if (Array.isArray(v)) v = v[0];
  if (!isObject(v)) return undefined;
  for (const [k, val] of Object.entries(v)) {
    if (k.startsWith('@_') && k.endsWith(':type') && typeof val === 'string') return val;
  }
  return undefined;
}

export function moref(v: XmlValue | undefined): MoRef | undefined {
  if (Array.isArray(v)) v = v[0];
  if (!isObject(v)) return undefined;
  const type = v['@_type'];
  const value = text(v);
  return typeof type === 'string' && value ? { type, value } : undefined;
}

export function sameRef(a: MoRef | undefined, b: MoRef | undefined): boolean {
  return !!a && !!b && a.type === b.type && a.value === b.value;
}

export function refKey(r: MoRef): string {
  return `${r.type}:${r.value}`;
}
