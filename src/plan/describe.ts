/**
 * One-line descriptions of entries and plan steps, in `ip xfrm` vocabulary, for plans, logs,
 * Events and status messages. They never contain key material (only algorithm names), which
 * test/unit/describe.test.ts checks.
 */
import type { Conflict, Plan, Step } from './planner.js';
import type { Prefix, SecurityAssociation, SecurityPolicy, Selector } from '../xfrm/types.js';
import { protocolName } from '../model/protocols.js';

const hex = (value: number, width = 8) => `0x${value.toString(16).padStart(width, '0')}`;
const prefix = (value: Prefix) => `${value.address}/${value.prefixLength}`;

export function describeSelector(selector: Selector): string {
  const parts = [`${prefix(selector.source)} -> ${prefix(selector.destination)}`];
  if (selector.protocol !== 0) {
    parts.push(`proto ${protocolName(selector.protocol)}`);
    const icmp = selector.protocol === 1 || selector.protocol === 58;
    if (selector.sourcePortMask !== 0) parts.push(`${icmp ? 'type' : 'sport'} ${selector.sourcePort}`);
    if (selector.destinationPortMask !== 0) parts.push(`${icmp ? 'code' : 'dport'} ${selector.destinationPort}`);
  }
  if (selector.ifindex !== 0) parts.push(`ifindex ${selector.ifindex}`);
  return parts.join(' ');
}

/** An SA in one line; `algorithms` may be absent (an XFRM_MSG_EXPIRE carries none). */
export function describeState(sa: Pick<SecurityAssociation, 'id' | 'source' | 'mode' | 'reqid' | 'encapsulation'> & { readonly algorithms?: SecurityAssociation['algorithms'] }): string {
  const parts = [
    `${sa.id.protocol === 'ipcomp' ? 'comp' : sa.id.protocol} spi ${hex(sa.id.spi)}`,
    `${sa.source} -> ${sa.id.destination}`,
    sa.mode,
  ];
  if (sa.reqid !== 0) parts.push(`reqid ${sa.reqid}`);
  const algorithms = sa.algorithms;
  switch (algorithms?.kind) {
    case 'aead':
      parts.push(`aead ${algorithms.aead.name} ${algorithms.aead.icvBits}`);
      break;
    case 'cipher':
      parts.push(`enc ${algorithms.cipher.name}`);
      if (algorithms.auth) parts.push(`auth-trunc ${algorithms.auth.name} ${algorithms.auth.truncationBits}`);
      break;
    case 'auth':
      parts.push(`auth-trunc ${algorithms.auth.name} ${algorithms.auth.truncationBits}`);
      break;
    case 'compression':
      parts.push(`comp ${algorithms.compression.name}`);
      break;
  }
  if (sa.id.mark) parts.push(`mark ${hex(sa.id.mark.value, 0)}/${hex(sa.id.mark.mask, 0)}`);
  if (sa.encapsulation) parts.push(`encap ${sa.encapsulation.type} ${sa.encapsulation.sourcePort} ${sa.encapsulation.destinationPort}`);
  return parts.join(' ');
}

export function describePolicy(policy: SecurityPolicy): string {
  const parts = [`${policy.id.direction}`, describeSelector(policy.id.selector)];
  if (policy.id.type === 'sub') parts.push('ptype sub');
  parts.push(policy.action, `priority ${policy.priority}`);
  if (policy.id.mark) parts.push(`mark ${hex(policy.id.mark.value, 0)}/${hex(policy.id.mark.mask, 0)}`);
  if (policy.id.ifId !== undefined) parts.push(`if_id ${policy.id.ifId}`);
  for (const template of policy.templates) {
    const addresses = template.mode === 'tunnel' ? ` ${template.source} -> ${template.destination}` : '';
    parts.push(`tmpl ${template.protocol === 'ipcomp' ? 'comp' : template.protocol} ${template.mode}${addresses}${template.reqid ? ` reqid ${template.reqid}` : ''}${template.level === 'use' ? ' level use' : ''}`);
  }
  return parts.join(' ');
}

const SYMBOL: Record<Step['op'], string> = { create: '+', update: '~', replace: '-/+', delete: '-' };

export function describeStep(step: Step): string {
  const entry = step.op === 'delete' ? step.previous : step.entry;
  const text = step.target === 'state' ? `sa ${describeState(entry as SecurityAssociation)}` : `policy ${describePolicy(entry as SecurityPolicy)}`;
  let detail = '';
  if (step.op === 'update') detail = ` (${step.changes.join(', ')})`;
  if (step.op === 'replace') {
    detail = ` (${step.changes.join(', ')}: ${step.target === 'state' ? 'the kernel cannot change this in place; the SA is deleted and re-added, which disturbs traffic using it' : 'deleted and re-added'})`;
  }
  return `${SYMBOL[step.op]} ${step.resource}: ${text}${detail}`;
}

export function describeConflict(conflict: Conflict): string {
  return `! ${conflict.resource}: ${conflict.reason}`;
}

export function describePlan(plan: Plan): string[] {
  return [...plan.steps.map(describeStep), ...plan.conflicts.map(describeConflict)];
}
