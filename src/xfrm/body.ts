/**
 * Helpers shared by the SA and policy codecs for message bodies: a fixed struct, then
 * attributes, looked up by type.
 */
import { AttributeDecoder, type RawAttribute } from '../netlink/attributes.js';
import { NetlinkCodecError } from '../netlink/codec-error.js';
import { xfrmAttributeName, XFRMA_MARK } from './abi/constants.js';
import { xfrm_mark } from './abi/structs.js';
import type { Mark } from './types.js';

/** Whether a number fits a __u32 field (SPIs, reqids, marks, priorities). */
export function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffff_ffff;
}

/** The last attribute of each type (the kernel sends each at most once). */
export function indexAttributes(attributes: readonly RawAttribute[]): Map<number, RawAttribute> {
  const index = new Map<number, RawAttribute>();
  for (const attribute of attributes) index.set(attribute.type, attribute);
  return index;
}

/** Splits a message body into its fixed struct and attributes, validating the attributes. */
export function splitBody<T extends object>(
  payload: Buffer,
  layout: { size: number; name: string; read(buffer: Buffer, offset: number): T },
  where: string,
): { head: T; attributes: Map<number, RawAttribute> } {
  if (payload.length < layout.size) {
    throw new NetlinkCodecError(where, `${payload.length}-byte payload, ${layout.name} needs ${layout.size}`);
  }
  const head = layout.read(payload, 0);
  // The fixed part is padded to 4 (NLMSG_ALIGN) before the first attribute.
  const start = Math.min((layout.size + 3) & ~3, payload.length);
  const decoder = new AttributeDecoder(payload.subarray(start), `attributes of ${where}`, xfrmAttributeName);
  decoder.finish();
  return { head, attributes: indexAttributes(decoder.all) };
}

/** A struct attribute, or undefined when absent; shorter than sizeof is an error. */
export function structAttribute<T extends object>(
  attributes: Map<number, RawAttribute>,
  type: number,
  layout: { size: number; name: string; read(buffer: Buffer, offset: number): T },
  where: string,
): T | undefined {
  const attribute = attributes.get(type);
  if (!attribute) return undefined;
  if (attribute.payload.length < layout.size) {
    throw new NetlinkCodecError(where, `${xfrmAttributeName(type)} has a ${attribute.payload.length}-byte payload, ${layout.name} needs ${layout.size}`);
  }
  return layout.read(attribute.payload, 0);
}

export function u32Attribute(attributes: Map<number, RawAttribute>, type: number, where: string): number | undefined {
  const attribute = attributes.get(type);
  if (!attribute) return undefined;
  if (attribute.payload.length < 4) {
    throw new NetlinkCodecError(where, `${xfrmAttributeName(type)} has a ${attribute.payload.length}-byte payload, a u32 needs 4`);
  }
  return attribute.payload.readUInt32LE(0);
}

export function markAttribute(attributes: Map<number, RawAttribute>, where: string): Mark | undefined {
  const mark = structAttribute(attributes, XFRMA_MARK, xfrm_mark, where);
  return mark ? { value: mark.v, mask: mark.m } : undefined;
}
